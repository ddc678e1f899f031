"""Sparse-matrix helpers shared by the neighbourhood and linear models: safetensors-friendly csr (de)serialisation
and row-wise top-k sparsification of dense similarity blocks."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch


def csr_to_state(prefix: str, m: sp.csr_array) -> dict[str, torch.Tensor]:
    """A csr matrix -> tensors ``{prefix}.indptr/.indices/.data/.shape`` (safetensors stores no scipy objects)."""
    return {
        f"{prefix}.indptr": torch.from_numpy(m.indptr.astype(np.int64)),
        f"{prefix}.indices": torch.from_numpy(m.indices.astype(np.int64)),
        f"{prefix}.data": torch.from_numpy(m.data.astype(np.float32)),
        f"{prefix}.shape": torch.tensor(m.shape, dtype=torch.int64),
    }


def csr_from_state(prefix: str, state: dict[str, torch.Tensor]) -> sp.csr_array:
    """Inverse of :func:`csr_to_state`."""
    shape = tuple(int(s) for s in state[f"{prefix}.shape"].tolist())
    return sp.csr_array(
        (state[f"{prefix}.data"].numpy(), state[f"{prefix}.indices"].numpy(), state[f"{prefix}.indptr"].numpy()),
        shape=shape,
    )


def topk_rows(sim: torch.Tensor, k: int, row_offset: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the ``k`` largest strictly positive entries of each row of a dense block ``sim`` (B, N).

    Returns COO triplets (rows + ``row_offset``, cols, values) as numpy arrays.
    """
    k = min(k, sim.shape[1])
    vals, cols = torch.topk(sim, k, dim=1)
    keep = vals > 0
    rows = torch.arange(sim.shape[0]).unsqueeze(1).expand_as(cols)
    return (rows[keep] + row_offset).numpy(), cols[keep].numpy(), vals[keep].numpy()


def sparse_dense_rows(h: sp.csr_array, dense: torch.Tensor) -> torch.Tensor:
    """``h @ dense`` for a sparse row block h (B, N) and a dense (N, M) tensor, multithreaded via torch -> (B, M)."""
    h = h.tocsr()
    with warnings.catch_warnings():  # torch flags sparse CSR as "beta" on every construction
        warnings.simplefilter("ignore", UserWarning)
        t = torch.sparse_csr_tensor(
            torch.from_numpy(h.indptr.astype(np.int64)),
            torch.from_numpy(h.indices.astype(np.int64)),
            torch.from_numpy(h.data.astype(np.float32)),
            size=h.shape,
            check_invariants=False,  # built from a valid scipy csr; checking would cost a pass over the data
        )
    return torch.sparse.mm(t, dense) if h.nnz else torch.zeros(h.shape[0], dense.shape[1])
