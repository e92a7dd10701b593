"""A share of a job among n processes: ``utility.shard=i/n`` (chunk k belongs to shard k mod n)."""

from __future__ import annotations

from dataclasses import dataclass

from uae.core.errors import UAEError


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str | None) -> Shard:
        """``"i/n"`` (0-based i), or None for the whole job."""
        if text in (None, "", "null"):
            return cls(0, 1)
        try:
            i, n = (int(x) for x in str(text).split("/"))
        except ValueError:
            i, n = -1, 0
        if n < 1 or not 0 <= i < n:
            raise UAEError(f"utility.shard={text!r}: write it as i/n with 0 <= i < n, e.g. utility.shard=0/4.")
        return cls(i, n)

    def owns(self, chunk: int) -> bool:
        return chunk % self.count == self.index
