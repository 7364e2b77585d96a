"""Speech for paired text, made offline: eSpeak NG (the shared library and voice data of the ``espeakng-loader``
wheel, called through ctypes), log-mel features with ``torch.stft``, and a disk cache.

eSpeak NG carries state from one utterance to the next; :class:`Synthesizer` makes every utterance the first of a
fresh process, with eSpeak's random seed set, so one text in one voice, speed and pitch always gives the same
samples (``tests/paired/test_speech.py``).

Example:
    >>> synthesizer = Synthesizer()  # doctest: +SKIP
    >>> wave = synthesizer.speak("United States", Voice("en+f2", rate=160, pitch=60))  # doctest: +SKIP
    >>> log_mel(wave, synthesizer.sample_rate).shape  # doctest: +SKIP
    torch.Size([40, 104])
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from distillkit.errors import require
from distillkit.paired.data import PairedDataset, PairsError, ParallelLexicon

__all__ = ["SpeechCache", "Synthesizer", "Voice", "log_mel", "mel_filterbank", "pad_frames", "spoken_concepts",
           "spoken_names"]

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_RATE, _PITCH = 1, 3


@dataclass(frozen=True)
class Voice:
    """An eSpeak NG voice: ``name`` is a language with an optional variant (``"en"``, ``"en+f2"``, ``"en-us+m3"``),
    ``rate`` in words per minute (80-450), ``pitch`` 0-99."""

    name: str = "en"
    rate: int = 175
    pitch: int = 50

    def __post_init__(self) -> None:
        if not 80 <= self.rate <= 450:
            raise PairsError(f"voice {self.name!r}: rate must be 80..450 words per minute, got {self.rate}")
        if not 0 <= self.pitch <= 99:
            raise PairsError(f"voice {self.name!r}: pitch must be 0..99, got {self.pitch}")

    @property
    def key(self) -> str:
        return f"{self.name}@{self.rate}@{self.pitch}"

    @classmethod
    def parse(cls, text: str) -> Voice:
        """A voice from its :attr:`key` ``"name[@rate[@pitch]]"``: ``"en+f2@160@60"``, ``"en+m3"``.

        Raises:
            PairsError: not of that form, or a rate or pitch out of range.
        """
        name, *numbers = text.split("@")
        if not name or len(numbers) > 2 or not all(n.isdigit() for n in numbers):
            raise PairsError(f"voice {text!r}: expected NAME[@RATE[@PITCH]], e.g. en+f2@160@60")
        return cls(name, *(int(n) for n in numbers))


def _synthesize(text: str, voice: Voice, seed: int) -> tuple[int, np.ndarray | str]:
    """Synthesize one utterance with a freshly initialised eSpeak NG (runs in a child process): the sample rate
    and the int16 samples, or an error message."""
    loader = require("espeakng_loader", "paired")
    lib = ctypes.CDLL(loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, os.path.dirname(loader.get_data_path()).encode(), 0)
    if rate <= 0:
        return 0, f"eSpeak NG failed to initialise from {loader.get_data_path()}"
    chunks: list[np.ndarray] = []
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def collect(wave: Any, count: int, events: Any) -> int:
        if count > 0:
            chunks.append(np.ctypeslib.as_array(wave, shape=(count,)).copy())
        return 0

    callback = callback_type(collect)
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
        return rate, (f"eSpeak NG has no voice {voice.name!r}; use a language code with an optional variant, e.g. "
                      "en, fr, de, en+f2, en+m3 (espeak-ng --voices lists them)")
    lib.espeak_SetParameter(_RATE, voice.rate, 0)
    lib.espeak_SetParameter(_PITCH, voice.pitch, 0)
    lib.espeak_ng_SetRandSeed(seed)
    encoded = text.encode("utf-8")
    status = lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
    lib.espeak_Synchronize()
    if status != 0 or not chunks:
        return rate, f"eSpeak NG could not synthesize {text!r} with voice {voice.name!r} (status {status})"
    return rate, np.concatenate(chunks)


def _context() -> Any:
    import multiprocessing

    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


class Synthesizer:
    """Text to speech with eSpeak NG, deterministic per (text, voice).

    eSpeak NG carries state from one utterance to the next (the same text twice in one process gives slightly
    different samples, even with its random seed reset), so every utterance is synthesized by a fresh child
    process, where it is the first: :meth:`speak_many` runs them on ``workers`` processes. Use it through a
    :class:`SpeechCache`, which synthesizes each (text, voice) once.

    Args:
        max_seconds: refuse an utterance longer than this (a long text would make one huge sample).
        seed: eSpeak's random seed for every utterance.
        workers: processes synthesizing at once in :meth:`speak_many`.
    """

    sample_rate: int = 22050

    def __init__(self, *, max_seconds: float = 4.0, seed: int = 0, workers: int = 2) -> None:
        require("espeakng_loader", "paired")
        self.max_seconds, self.seed, self.workers = max_seconds, seed, max(1, workers)

    @staticmethod
    def _check(text: str) -> None:
        if not text or not text.strip():
            raise PairsError("cannot synthesize an empty text")

    def _finish(self, text: str, voice: Voice, rate: int, result: np.ndarray | str) -> Tensor:
        if isinstance(result, str):
            raise PairsError(result)
        self.sample_rate = rate
        wave = result.astype(np.float32) / 32768.0
        seconds = len(wave) / rate
        if seconds > self.max_seconds:
            raise PairsError(f"{text!r} spoken by {voice.key} lasts {seconds:.1f} s, longer than the maximum of "
                             f"{self.max_seconds} s (raise max_seconds, or use shorter texts)")
        return torch.from_numpy(wave)

    def speak(self, text: str, voice: Voice = Voice()) -> Tensor:
        """``[samples]`` float32 audio in ``[-1, 1]`` at :attr:`sample_rate`.

        Raises:
            PairsError: an empty text, a voice eSpeak NG does not have, or audio longer than ``max_seconds``.
        """
        return self.speak_many([(text, voice)])[0]

    def speak_many(self, items: list[tuple[str, Voice]]) -> list[Tensor]:
        """The audio of every ``(text, voice)``, in order, each from its own child process."""
        for text, _ in items:
            self._check(text)
        with _context().Pool(min(self.workers, len(items)) or 1, maxtasksperchild=1) as pool:
            results = pool.starmap(_synthesize, [(text, voice, self.seed) for text, voice in items], chunksize=1)
        return [self._finish(text, voice, rate, result) for (text, voice), (rate, result) in zip(items, results)]


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, *, f_min: float = 0.0,
                   f_max: float | None = None) -> Tensor:
    """``[n_mels, n_fft // 2 + 1]`` triangular filters on the HTK mel scale (``2595 log10(1 + f / 700)``)."""
    f_max = f_max or sample_rate / 2
    mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)  # noqa: E731
    points = torch.linspace(mel(f_min), mel(f_max), n_mels + 2)
    hertz = 700.0 * (10 ** (points / 2595.0) - 1.0)
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = hertz[:-2, None], hertz[1:-1, None], hertz[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


def log_mel(wave: Tensor, sample_rate: int, *, n_mels: int = 40, window_ms: float = 25.0, hop_ms: float = 10.0
            ) -> Tensor:
    """``[n_mels, frames]`` log-mel spectrogram of ``[samples]`` audio (``log(mel power + 1e-6)``)."""
    n_fft = 2 ** math.ceil(math.log2(sample_rate * window_ms / 1000))
    hop = int(sample_rate * hop_ms / 1000)
    spectrum = torch.stft(wave.float(), n_fft, hop_length=hop, win_length=int(sample_rate * window_ms / 1000),
                          window=torch.hann_window(int(sample_rate * window_ms / 1000)), return_complex=True)
    power = spectrum.abs() ** 2
    return torch.log(mel_filterbank(n_mels, n_fft, sample_rate) @ power + 1e-6)


class SpeechCache:
    """Synthesized audio on disk, one ``.npy`` per (text, voice), written once (atomically) and read after.

    Args:
        folder: where the files go (created when needed).
        synthesizer: the synthesizer used on a miss.
    """

    def __init__(self, folder: str | os.PathLike[str], synthesizer: Synthesizer | None = None) -> None:
        self.folder = Path(folder)
        self.synthesizer = synthesizer or Synthesizer()

    def path(self, text: str, voice: Voice) -> Path:
        digest = hashlib.sha256(f"{voice.key}\x00{self.synthesizer.seed}\x00{text}".encode()).hexdigest()[:24]
        return self.folder / digest[:2] / f"{digest}.npy"

    def speak(self, text: str, voice: Voice = Voice()) -> Tensor:
        """The cached audio of ``text`` in ``voice``, synthesized and stored on the first call."""
        return self.speak_many([(text, voice)])[0]

    def speak_many(self, items: list[tuple[str, Voice]]) -> list[Tensor]:
        """The audio of every ``(text, voice)``: read from the cache, the missing ones synthesized together."""
        missing = [item for item in dict.fromkeys(items) if not self.path(*item).is_file()]
        for item, wave in zip(missing, self.synthesizer.speak_many(missing) if missing else [], strict=True):
            file = self.path(*item)
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(f".{file.name}.{uuid.uuid4().hex[:8]}.tmp.npy")
            try:
                np.save(tmp, wave.numpy())
                tmp.replace(file)
            finally:
                tmp.unlink(missing_ok=True)
        return [torch.from_numpy(np.load(self.path(*item))) for item in items]


def pad_frames(features: Tensor, frames: int, *, floor: float = math.log(1e-6)) -> Tensor:
    """``[n_mels, T]`` features padded with the silence floor (or cut) to ``[n_mels, frames]``."""
    if features.shape[1] >= frames:
        return features[:, :frames].contiguous()
    return torch.nn.functional.pad(features, (0, frames - features.shape[1]), value=floor)


def spoken_concepts(lexicon: ParallelLexicon, concepts: list[int], *, source: str = "en") -> list[int]:
    """The concepts whose name is worth speaking: those without a parenthesis. Those are historic currencies and
    variants ("Afghan Afghani (1927-2002)"): too long to speak in a few seconds, and their dates give the kind
    away."""
    return [c for c in concepts if "(" not in lexicon.names[source][c]]


def spoken_names(lexicon: ParallelLexicon, concepts: list[int], voices: list[Voice], cache: SpeechCache, *,
                 source: str = "en", n_mels: int = 40) -> PairedDataset:
    """Every name of ``concepts`` (in ``source``) spoken by every voice: views ``"text"`` (the name) and
    ``"audio"`` (its log-mel spectrogram ``[n_mels, frames]``, padded to the synthesizer's maximum length), the
    concept's kind as the label, and ``"voice"`` / ``"concept"`` fields for held-out evaluation.

    Raises:
        PairsError: a voice eSpeak NG does not have, an empty name, or a name spoken longer than the maximum.
    """
    items = [(lexicon.names[source][c], voice) for c in concepts for voice in voices]
    waves = cache.speak_many(items)
    rate = cache.synthesizer.sample_rate
    frames = int(math.ceil(cache.synthesizer.max_seconds * 100)) + 1  # 10 ms hops
    audio = [pad_frames(log_mel(wave, rate, n_mels=n_mels), frames) for wave in waves]
    labels = lexicon.labels()
    return PairedDataset({"text": [text for text, _ in items], "audio": audio},
                         targets=[int(labels[c]) for c in concepts for _ in voices],
                         extra={"voice": [v.key for _, v in items], "concept": [c for c in concepts for _ in voices]})
