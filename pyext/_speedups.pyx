# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled per-event loops of livechat; each has a plain-Python twin in ``livechat._pure``.

The twins define the contract (see their docstrings); these give the same answers bit for bit
(tests/unit/test_speedups_agree.py) and exist only for speed (bench/test_speedups.py).
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_4BYTE_KIND, PyUnicode_FromKindAndData
from libc.stdint cimport int32_t, uint64_t

import unicodedata

from livechat._pure.blocklist import ASCII_FOLD, HOMOGLYPHS, Automaton

# --- skeleton / block list -----------------------------------------------------------------------

cdef Py_UCS4 _ascii_fold[128]
cdef Py_UCS4 _glyph_from[64]
cdef Py_UCS4 _glyph_to[64]
cdef int _n_glyphs = 0


cdef void _init_tables() except *:
    global _n_glyphs
    cdef int i
    for i in range(128):
        _ascii_fold[i] = ord(ASCII_FOLD[i]) if ASCII_FOLD[i] else 0
    pairs = sorted(HOMOGLYPHS.items())
    if len(pairs) > 64:
        raise RuntimeError("homoglyph table larger than its compiled buffer")
    for i, (src, dst) in enumerate(pairs):
        _glyph_from[i] = ord(src)
        _glyph_to[i] = ord(dst)
    _n_glyphs = len(pairs)


_init_tables()


cdef inline bint _is_combining(Py_UCS4 c) noexcept:
    return (
        (0x0300 <= c <= 0x036F)
        or (0x1AB0 <= c <= 0x1AFF)
        or (0x1DC0 <= c <= 0x1DFF)
        or (0x20D0 <= c <= 0x20FF)
        or (0xFE20 <= c <= 0xFE2F)
    )


cdef inline Py_UCS4 _fold(Py_UCS4 ch) noexcept:
    """What one NFKD character becomes in a skeleton; 0 = dropped (twin: blocklist.fold_char)."""
    cdef Py_UCS4 low
    cdef int lo, hi, mid
    if ch < 128:
        return _ascii_fold[ch]
    if _is_combining(ch) or not ch.isalnum():
        return 0
    low = ch.lower()
    if low < 128:
        return _ascii_fold[low]
    lo = 0
    hi = _n_glyphs - 1
    while lo <= hi:
        mid = (lo + hi) >> 1
        if _glyph_from[mid] == low:
            return _glyph_to[mid]
        if _glyph_from[mid] < low:
            lo = mid + 1
        else:
            hi = mid - 1
    return low


def skeleton(str text):
    """The matching form of ``text`` (twin: livechat._pure.blocklist.skeleton)."""
    cdef Py_UCS4 ch, folded, prev = 0
    cdef Py_ssize_t n = 0
    cdef Py_UCS4* buf
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
    buf = <Py_UCS4*> PyMem_Malloc((len(text) + 1) * sizeof(Py_UCS4))
    if buf == NULL:
        raise MemoryError()
    try:
        for ch in text:
            folded = _fold(ch)
            if folded != 0 and folded != prev:
                buf[n] = folded
                n += 1
                prev = folded
        return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, buf, n)
    finally:
        PyMem_Free(buf)


cdef class BlockScanner:
    """Finds block-list terms in texts (twin: livechat._pure.blocklist.BlockScanner).

    Folding and the automaton walk are fused: no skeleton string is built.
    """

    cdef int32_t* _goto
    cdef int32_t* _output
    cdef int32_t _ascii_sym[128]
    cdef Py_UCS4* _extra_chars
    cdef int32_t* _extra_syms
    cdef int _n_extra
    cdef int _width
    cdef tuple _terms

    def __cinit__(self):
        self._goto = NULL
        self._output = NULL
        self._extra_chars = NULL
        self._extra_syms = NULL

    def __init__(self, terms):
        cdef Py_ssize_t i
        auto = Automaton(terms)
        self._terms = auto.terms
        self._width = auto.width
        goto = auto.goto
        output = auto.output
        self._goto = <int32_t*> PyMem_Malloc(len(goto) * sizeof(int32_t))
        self._output = <int32_t*> PyMem_Malloc(len(output) * sizeof(int32_t))
        extra = sorted((ord(ch), sym) for ch, sym in auto.symbols.items() if ord(ch) >= 128)
        self._n_extra = len(extra)
        self._extra_chars = <Py_UCS4*> PyMem_Malloc((self._n_extra + 1) * sizeof(Py_UCS4))
        self._extra_syms = <int32_t*> PyMem_Malloc((self._n_extra + 1) * sizeof(int32_t))
        if (self._goto == NULL or self._output == NULL or self._extra_chars == NULL
                or self._extra_syms == NULL):
            raise MemoryError()
        for i in range(len(goto)):
            self._goto[i] = goto[i]
        for i in range(len(output)):
            self._output[i] = output[i]
        for i in range(128):
            self._ascii_sym[i] = 0
        for ch, sym in auto.symbols.items():
            if ord(ch) < 128:
                self._ascii_sym[ord(ch)] = sym
        for i, (code, sym) in enumerate(extra):
            self._extra_chars[i] = code
            self._extra_syms[i] = sym

    def __dealloc__(self):
        PyMem_Free(self._goto)
        PyMem_Free(self._output)
        PyMem_Free(self._extra_chars)
        PyMem_Free(self._extra_syms)

    @property
    def terms(self):
        return self._terms

    cdef inline int32_t _symbol(self, Py_UCS4 folded) noexcept:
        cdef int lo, hi, mid
        if folded < 128:
            return self._ascii_sym[folded]
        lo = 0
        hi = self._n_extra - 1
        while lo <= hi:
            mid = (lo + hi) >> 1
            if self._extra_chars[mid] == folded:
                return self._extra_syms[mid]
            if self._extra_chars[mid] < folded:
                lo = mid + 1
            else:
                hi = mid - 1
        return 0

    cdef int _scan(self, str text) except -2:
        cdef Py_UCS4 ch, folded, prev = 0
        cdef int32_t state = 0, hit
        cdef int width = self._width
        if not text.isascii():
            text = unicodedata.normalize("NFKD", text)
        for ch in text:
            folded = _fold(ch)
            if folded == 0 or folded == prev:
                continue
            prev = folded
            state = self._goto[state * width + self._symbol(folded)]
            hit = self._output[state]
            if hit != -1:
                return hit
        return -1

    def first_match(self, str text):
        """Index of the term whose match ends first in the skeleton, or -1."""
        return self._scan(text)

    def scan_many(self, texts):
        """``first_match`` of each text."""
        return [self._scan(text) for text in texts]


# --- token buckets -------------------------------------------------------------------------------

cdef class TokenTable:
    """Token buckets keyed by any hashable value (twin: livechat._pure.tokens.TokenTable)."""

    cdef double* _rates
    cdef double* _bursts
    cdef int _n_classes
    cdef double* _tokens
    cdef double* _stamps
    cdef int32_t* _cls
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _next
    cdef dict _slots
    cdef list _free

    def __cinit__(self):
        self._rates = NULL
        self._bursts = NULL
        self._tokens = NULL
        self._stamps = NULL
        self._cls = NULL

    def __init__(self, classes):
        cdef int i
        if not classes:
            raise ValueError("TokenTable needs at least one class")
        self._n_classes = len(classes)
        self._rates = <double*> PyMem_Malloc(self._n_classes * sizeof(double))
        self._bursts = <double*> PyMem_Malloc(self._n_classes * sizeof(double))
        if self._rates == NULL or self._bursts == NULL:
            raise MemoryError()
        for i, (rate, burst) in enumerate(classes):
            if rate > 0 and burst < 1:
                raise ValueError(f"burst must be >= 1 for a limited class, got {burst}")
            self._rates[i] = float(rate)
            self._bursts[i] = float(burst)
        self._slots = {}
        self._free = []
        self._cap = 0
        self._next = 0
        self._grow(1024)

    def __dealloc__(self):
        PyMem_Free(self._rates)
        PyMem_Free(self._bursts)
        PyMem_Free(self._tokens)
        PyMem_Free(self._stamps)
        PyMem_Free(self._cls)

    cdef int _grow(self, Py_ssize_t cap) except -1:
        cdef double* tokens = <double*> PyMem_Realloc(self._tokens, cap * sizeof(double))
        if tokens == NULL:
            raise MemoryError()
        self._tokens = tokens
        cdef double* stamps = <double*> PyMem_Realloc(self._stamps, cap * sizeof(double))
        if stamps == NULL:
            raise MemoryError()
        self._stamps = stamps
        cdef int32_t* cls = <int32_t*> PyMem_Realloc(self._cls, cap * sizeof(int32_t))
        if cls == NULL:
            raise MemoryError()
        self._cls = cls
        self._cap = cap
        return 0

    def __len__(self):
        return len(self._slots)

    cdef inline int _check_class(self, int cls) except -1:
        if cls < 0 or cls >= self._n_classes:
            raise IndexError(f"token class {cls} out of range")
        return 0

    cdef int _allow(self, object key, int cls, double now) except -1:
        cdef double rate, burst, tokens, elapsed
        cdef Py_ssize_t slot
        self._check_class(cls)
        rate = self._rates[cls]
        if rate <= 0.0:
            return 1
        burst = self._bursts[cls]
        found = self._slots.get(key)
        if found is None:
            tokens = burst
        else:
            slot = <Py_ssize_t> found
            elapsed = now - self._stamps[slot]
            if elapsed < 0.0:
                elapsed = 0.0
            tokens = self._tokens[slot] + elapsed * rate
            if tokens > burst:
                tokens = burst
        if tokens < 1.0:
            return 0
        if found is None:
            if self._free:
                slot = <Py_ssize_t> self._free.pop()
            else:
                if self._next == self._cap:
                    self._grow(self._cap * 2)
                slot = self._next
                self._next += 1
            self._slots[key] = slot
        self._tokens[slot] = tokens - 1.0
        self._stamps[slot] = now
        self._cls[slot] = cls
        return 1

    def allow(self, key, int cls, double now):
        """Take one token from ``key``'s bucket; False (nothing taken) when it has less than one."""
        return self._allow(key, cls, now) == 1

    def allow_many(self, keys, classes, double now):
        """``allow`` for each (key, class) pair in order; 1 = allowed, 0 = refused."""
        cdef Py_ssize_t i, n = len(keys)
        if n != len(classes):
            raise ValueError("keys and classes differ in length")
        out = bytearray(n)
        cdef unsigned char[::1] view = out
        for i in range(n):
            view[i] = <unsigned char> self._allow(keys[i], classes[i], now)
        return out

    def retry_after(self, key, int cls, double now):
        """Seconds until ``key`` holds one token again (0.0 when it holds one now)."""
        cdef double rate, tokens, elapsed
        cdef Py_ssize_t slot
        self._check_class(cls)
        rate = self._rates[cls]
        if rate <= 0.0:
            return 0.0
        found = self._slots.get(key)
        if found is None:
            return 0.0
        slot = <Py_ssize_t> found
        elapsed = now - self._stamps[slot]
        if elapsed < 0.0:
            elapsed = 0.0
        tokens = self._tokens[slot] + elapsed * rate
        if tokens >= 1.0:
            return 0.0
        return (1.0 - tokens) / rate

    def prune(self, double now):
        """Drop buckets that have refilled to their burst; returns how many."""
        cdef Py_ssize_t slot
        cdef double elapsed
        cdef int cls
        full = []
        for key, found in self._slots.items():
            slot = <Py_ssize_t> found
            cls = self._cls[slot]
            elapsed = now - self._stamps[slot]
            if elapsed < 0.0:
                elapsed = 0.0
            if self._tokens[slot] + elapsed * self._rates[cls] >= self._bursts[cls]:
                full.append(key)
        for key in full:
            self._free.append(self._slots.pop(key))
        return len(full)


# --- sampling ------------------------------------------------------------------------------------

cdef inline uint64_t _mix(uint64_t z) noexcept nogil:
    z = z + 0x9E3779B97F4A7C15ULL
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


def mix64(uint64_t value):
    """SplitMix64 finaliser of a 64-bit unsigned value."""
    return _mix(value)


def keep_sample(uint64_t comment_id, long long keep_ppm):
    """True when the comment is broadcast at a keep fraction of ``keep_ppm`` / 1 000 000."""
    return <long long> (_mix(comment_id) % 1000000ULL) < keep_ppm


def sample_mask(comment_ids, long long keep_ppm):
    """``keep_sample`` of each id: 1 = broadcast, 0 = store only."""
    cdef Py_ssize_t i, n = len(comment_ids)
    cdef uint64_t value
    out = bytearray(n)
    cdef unsigned char[::1] view = out
    for i in range(n):
        value = comment_ids[i]
        view[i] = (<long long> (_mix(value) % 1000000ULL)) < keep_ppm
    return out
