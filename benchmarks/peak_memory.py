"""Peak memory growth of a block of code: glibc's heap in use on the CPU, CUDA's allocator peak on a GPU."""

from __future__ import annotations

import ctypes
import threading
import time

import torch


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks")
        + ("fordblks", "keepcost")
    ]


class PeakMemory:
    """Peak memory growth during a block: the CPU heap's bytes in use, sampled; CUDA's allocator peak.

    On the CPU, glibc's ``mallinfo2`` counts the bytes allocated and not yet freed (PyTorch's CPU
    tensors included); unlike the resident set size it does not count memory the allocator keeps
    after a free, so what an earlier phase freed does not show up as a later phase's use.
    """

    _libc = None

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0
        self._running = False

    @classmethod
    def in_use(cls) -> int:
        """Bytes of the CPU heap in use (glibc ``mallinfo2``: arena plus mmapped blocks)."""
        if cls._libc is None:
            cls._libc = ctypes.CDLL("libc.so.6")
            cls._libc.mallinfo2.restype = _MallInfo2
        info = cls._libc.mallinfo2()
        return info.uordblks + info.hblkhd

    def _sample(self) -> None:
        while self._running:
            self.peak = max(self.peak, self.in_use())
            time.sleep(0.002)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = self.peak = self.in_use()
            self._running = True
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._running = False
            self._thread.join()
            self.peak = max(self.peak, self.in_use())

    @property
    def growth_mb(self) -> float:
        """Peak minus the memory held on entry, in MiB."""
        return (self.peak - self.base) / 2**20
