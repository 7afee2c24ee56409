"""Link checks: the async checker and each link's status over time."""
