"""Online ranking: understand the query, retrieve, score, re-rank."""
