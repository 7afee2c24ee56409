"""Layer features of the sentence encoder: mean-pooled hidden states of its lower layers.

MiniLM's last layer, mean-pooled and normalised, is the sentence embedding; the lower layers hold
more lexical information (layer 0 is the token embeddings themselves). ``LAYER_GROUPS`` lists the
hidden states whose masked means are averaged into one 384-d block each. The serving encoders
compute them in the same forward pass as the embedding and leave them in ``MEMO`` (bounded, keyed by
text and checked against the embedding), so the query-mood model reads them at no extra cost.
"""

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from pipelines.embed.sentence import EMBEDDING_DIM, load_encoder

LAYER_GROUPS: tuple[tuple[int, ...], ...] = ((0,), (1, 2, 3, 4, 5))  # hidden-state indices per block
N_LAYER_FEATURES = len(LAYER_GROUPS) * EMBEDDING_DIM
MEMO_SIZE = 512


def pool_groups(hidden_states: Sequence, mask):
    """(n, N_LAYER_FEATURES) block means of the masked mean of each hidden state in ``LAYER_GROUPS``.

    ``hidden_states``: the model's (n, t, 384) tensors, embeddings first; ``mask``: (n, t, 1) of the
    same dtype. Works on torch tensors (training, the torch encoder and the ONNX export alike)."""
    import torch

    counts = mask.sum(dim=1).clamp(min=1e-9)
    blocks = []
    for group in LAYER_GROUPS:
        pooled = [(hidden_states[i] * mask).sum(dim=1) / counts for i in group]
        blocks.append(sum(pooled[1:], pooled[0]) / len(group))
    return torch.cat(blocks, dim=1)


def embed_with_layers(
    texts: Sequence[str], *, batch_size: int = 128, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings (n, 384) unit rows, layer features (n, N_LAYER_FEATURES)), both float32, from one
    torch pass over length-sorted batches (the embeddings are those of ``embed_texts``)."""
    import torch
    from tqdm.auto import tqdm

    texts = list(texts)
    emb = np.zeros((len(texts), EMBEDDING_DIM), np.float32)
    layers = np.zeros((len(texts), N_LAYER_FEATURES), np.float32)
    if not texts:
        return emb, layers
    model = load_encoder()
    tokenizer, net = model[0].tokenizer, model[0].auto_model.eval()
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in tqdm(range(0, len(texts), batch_size), desc="encoder layers", disable=not progress):
        idx = order[start : start + batch_size]
        feats = tokenizer([texts[i] for i in idx], padding=True, truncation="longest_first",
                          max_length=int(model.max_seq_length), return_tensors="pt")
        with torch.inference_mode():
            hidden = net(**feats, output_hidden_states=True, return_dict=True).hidden_states
            mask = feats["attention_mask"].unsqueeze(-1).to(hidden[-1].dtype)
            last = (hidden[-1] * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            emb[idx] = torch.nn.functional.normalize(last, p=2, dim=1).numpy()
            layers[idx] = pool_groups(hidden, mask).numpy()
    return emb, layers


class LayerMemo:
    """Bounded text → (embedding, layer features) memo shared by the encoders and their readers.

    ``get`` answers only when every text is present and its stored embedding matches the one the
    caller holds (so features of another encoder's or another model's pass are never mixed in)."""

    def __init__(self, maxsize: int = MEMO_SIZE) -> None:
        self._items: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self.maxsize = maxsize

    def put(self, texts: Sequence[str], embeddings: np.ndarray, layers: np.ndarray) -> None:
        with self._lock:
            for text, e, f in zip(texts, embeddings, layers):
                self._items[text] = (np.array(e, np.float32), np.array(f, np.float32))
                self._items.move_to_end(text)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def get(self, texts: Sequence[str], embeddings: np.ndarray, *, atol: float = 1e-3) -> np.ndarray | None:
        """(n, N_LAYER_FEATURES) float32 for ``texts``, or None unless all are present and match."""
        with self._lock:
            found = [self._items.get(t) for t in texts]
        if any(f is None for f in found):
            return None
        stored = np.stack([f[0] for f in found])
        if stored.shape != np.shape(embeddings) or not np.allclose(stored, embeddings, atol=atol):
            return None
        return np.stack([f[1] for f in found])

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


MEMO = LayerMemo()
