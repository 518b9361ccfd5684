"""Classification heads on embeddings: the contract, the table of heads and pickle-free saving."""

from pipeline.heads.base import Head
from pipeline.heads.persistence import load_head, save_head
from pipeline.heads.registry import HEAD_NAMES, HEADS, head_class, heads_help, make_head

__all__ = ["HEADS", "HEAD_NAMES", "Head", "head_class", "heads_help", "load_head", "make_head", "save_head"]
