"""eSpeak NG through ctypes on the shared library `espeakng-loader` ships (no system espeak).

Hand-written because no Python package wraps eSpeak's synchronous mode with a sample callback
without also pulling a phonemizer stack. Synthesis is a pure function of its arguments: eSpeak
keeps state between utterances (flutter phase, noise generators) and `espeak_Terminate` does not
reset it, so every call loads a fresh copy of the library and unloads it afterwards (~1 ms), and
seeds both eSpeak's and libc's random generators. (If something else in the process keeps the
same library loaded, e.g. a phonemizer, the unload is a no-op and outputs depend on call order.)
"""

import _ctypes
import ctypes
import functools

import espeakng_loader
import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class EspeakError(RuntimeError):
    """eSpeak NG refused a voice or a text."""


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None)


def synthesize(
    text: str,
    voice: str,
    rate_wpm: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
    volume: int = 100,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Speak `text` with eSpeak voice `voice` (e.g. "en-us+m3"); returns (int16 samples, rate).

    `rate_wpm` is words per minute (80-450), `pitch` and `pitch_range` are 0-100 (50 is the
    voice's own), `volume` is 0-200 (100 can clip loud variants), `seed` drives eSpeak's random parts (flutter, breath, Klatt noise).
    """
    chunks: list[np.ndarray] = []

    @_SYNTH_CALLBACK
    def collect(samples, count, _events):  # (int16*, n, events) -> 0 to continue
        if count > 0:
            chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    try:
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        data_path = espeakng_loader.get_data_path().encode()
        sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
        if sample_rate <= 0:
            raise EspeakError(f"eSpeak NG failed to initialize with data at {data_path.decode()}")
        lib.espeak_SetSynthCallback(collect)
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise EspeakError(f"eSpeak NG has no voice {voice!r}")
        lib.espeak_SetParameter(_RATE, int(rate_wpm), 0)
        lib.espeak_SetParameter(_PITCH, int(pitch), 0)
        lib.espeak_SetParameter(_RANGE, int(pitch_range), 0)
        lib.espeak_SetParameter(_VOLUME, int(volume), 0)
        lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        _libc().srand(ctypes.c_uint(seed & 0xFFFFFFFF))  # eSpeak also calls libc rand()
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        encoded = text.encode() + b"\0"
        status = lib.espeak_Synth(
            encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        if status != 0:
            raise EspeakError(f"eSpeak NG could not speak {text!r} (status {status})")
        lib.espeak_Synchronize()
        lib.espeak_Terminate()
    finally:
        _ctypes.dlclose(lib._handle)
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    return samples, sample_rate
