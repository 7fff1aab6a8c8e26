"""Plain-Python twins of the compiled ``livechat._speedups``: same API, same answers.

``livechat.fastpath`` picks the compiled module when it is built and these otherwise.
"""

from livechat._pure.blocklist import Automaton, BlockScanner, skeleton
from livechat._pure.sampling import keep_sample, mix64, sample_mask
from livechat._pure.tokens import TokenTable

__all__ = ["Automaton", "BlockScanner", "TokenTable", "keep_sample", "mix64", "sample_mask", "skeleton"]
