"""SynthAffect voice: speech-like voiced sound from a source-filter model, with affective prosody.

Each subject has a stable :class:`VoiceIdentity` (pitch, vocal-tract length, breathiness, speaking rate,
loudness). :func:`synthesize_voice` renders one utterance of nonsense syllables on top of it:

* **source**: a Rosenberg glottal pulse train (its derivative, i.e. with lip radiation) following an F0
  contour built from a pitch level, phrase declination, one accent per syllable and a phrase-final rise or
  fall, with period-to-period jitter and shimmer, a spectral tilt and aspiration noise gated by the open
  phase of the glottis;
* **filter**: per syllable, a cascade of three formant resonators (F1-F3, scaled by the voice's formant
  scale) glides from a consonant locus to a vowel; some syllables start with a fricative burst;
* **timing**: syllables at the speaking rate with raised-cosine envelopes, per-syllable stress and short
  pauses; a little background noise.

Affect acts on top of the subject's voice, each cue with per-sample randomness:

* arousal raises pitch level, pitch range, loudness, tempo and jitter and brightens the spectrum;
* valence shapes the contour (positive: flatter declination and a final rise; negative: falling) and tilts
  the spectrum a little;
* expressions add characteristic, noisy cues scaled by intensity (see :data:`_EXPRESSION_CUES`): sad is
  low, slow, breathy and falling; anger loud and tense (bright); fear high and fast with tremolo;
  surprise a rising pitch sweep; disgust and contempt lower with creaky stretches; happy high with a wide
  range; neutral flat.

Only numpy and scipy are used. A 2 s utterance at 16 kHz takes a few milliseconds on one core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from multimodal_fer.datasets.synthaffect.labels import EXPRESSIONS_8
from multimodal_fer.errors import DataError

#: Lowest sample rate (Hz) accepted by :func:`synthesize_voice` (F3 and fricatives need a few kHz).
MIN_SAMPLE_RATE = 4000

#: Vowel formants F1-F3 in Hz of an adult male voice (formant scale 1.0), after Peterson & Barney (1952).
_VOWELS_HZ = np.array(
    [
        [270.0, 2290.0, 3010.0],  # i
        [390.0, 1990.0, 2550.0],  # ɪ
        [530.0, 1840.0, 2480.0],  # ɛ
        [660.0, 1720.0, 2410.0],  # æ
        [730.0, 1090.0, 2440.0],  # ɑ
        [570.0, 840.0, 2410.0],  # ɔ
        [440.0, 1020.0, 2240.0],  # ʊ
        [300.0, 870.0, 2240.0],  # u
        [640.0, 1190.0, 2390.0],  # ʌ
        [490.0, 1350.0, 1690.0],  # ɝ
    ]
)
#: F2 loci of labial, alveolar and velar consonants (Hz, male voice): where a syllable's formants start.
_F2_LOCI_HZ = np.array([900.0, 1700.0, 2200.0])
#: Formant bandwidths (Hz) of F1-F3.
_BANDWIDTHS_HZ = np.array([70.0, 100.0, 140.0])
#: Level above which the output limiter starts to compress peaks (full scale is 1).
_LIMIT_KNEE = 0.7
#: Points per period of the tabulated glottal pulse.
_PULSE_TABLE_SIZE = 2048


@dataclass(frozen=True)
class VoiceIdentity:
    """Stable vocal traits of one subject.

    Attributes:
        f0_hz: habitual pitch in Hz, from low male voices (~95) to high female voices (~240).
        formant_scale: factor on all formant frequencies; inverse to vocal-tract length (1.0 adult male,
            about 1.15 adult female).
        breathiness: aspiration-noise level relative to the voiced source, in [0, 1] (typically 0.05-0.4).
        speaking_rate: syllables per second at neutral arousal (about 3.5-5.5).
        loudness_db: speech RMS level in dB full scale at neutral arousal (about -27 to -19).

    """

    f0_hz: float
    formant_scale: float
    breathiness: float
    speaking_rate: float
    loudness_db: float


@dataclass(frozen=True)
class _Cue:
    """How one expression shifts prosody, at intensity 1 (scaled by intensity, then randomised).

    Attributes:
        pitch_st: pitch-level shift in semitones.
        range_factor: factor on the accent range (log-scaled by intensity).
        rate_factor: factor on the speaking rate.
        loudness_db: loudness shift in dB.
        breathiness: added breathiness.
        tilt: added spectral tilt (positive = darker, negative = brighter/tense).
        declination_st_s: added declination in semitones per second (negative = falling).
        sweep_st: rising pitch sweep over one early syllable, in semitones.
        tremolo: depth of a 5-8 Hz pitch vibrato in semitones (plus a matching amplitude tremolo).
        creak: fraction of syllables spoken in creaky voice (half F0, strong jitter and shimmer).
        pause_factor: factor on the pause probability.

    """

    pitch_st: float = 0.0
    range_factor: float = 1.0
    rate_factor: float = 1.0
    loudness_db: float = 0.0
    breathiness: float = 0.0
    tilt: float = 0.0
    declination_st_s: float = 0.0
    sweep_st: float = 0.0
    tremolo: float = 0.0
    creak: float = 0.0
    pause_factor: float = 1.0


#: Characteristic prosodic cue of each expression, in :data:`~multimodal_fer.types.EXPRESSIONS_8` order.
_EXPRESSION_CUES: dict[str, _Cue] = {
    "neutral": _Cue(range_factor=0.6),
    "happy": _Cue(pitch_st=1.5, range_factor=1.6, rate_factor=1.05, loudness_db=1.0, tilt=-0.08),
    "sad": _Cue(
        pitch_st=-1.5,
        range_factor=0.6,
        rate_factor=0.8,
        loudness_db=-3.0,
        breathiness=0.25,
        tilt=0.15,
        declination_st_s=-1.5,
        pause_factor=1.8,
    ),
    "surprise": _Cue(pitch_st=1.0, range_factor=1.3, sweep_st=6.0),
    "fear": _Cue(pitch_st=2.0, rate_factor=1.15, breathiness=0.1, tremolo=0.8, pause_factor=0.7),
    "disgust": _Cue(pitch_st=-1.0, rate_factor=0.9, loudness_db=-1.0, tilt=0.05, creak=0.35),
    "anger": _Cue(pitch_st=1.0, range_factor=1.2, rate_factor=1.05, loudness_db=5.0, tilt=-0.2),
    "contempt": _Cue(
        pitch_st=-1.5,
        range_factor=0.8,
        rate_factor=0.85,
        loudness_db=-2.0,
        declination_st_s=-1.0,
        creak=0.25,
    ),
}

#: Probability that an expression's cue shows at all in a given utterance (the rest are unmarked).
_CUE_PROBABILITY = 0.5


@dataclass(frozen=True)
class _Prosody:
    """Utterance-level settings derived from the voice and the affect of one sample."""

    f0_hz: float
    range_st: float
    declination_st_s: float
    final_st: float
    rate: float
    pause_probability: float
    loudness_db: float
    breathiness: float
    tilt: float
    open_quotient: float
    jitter: float
    shimmer: float
    sweep_st: float
    tremolo_st: float
    tremolo_hz: float
    creak: float


def sample_voice_identity(rng: np.random.Generator) -> VoiceIdentity:
    """Draw the voice of a new subject: about half low (male-like) and half high (female-like) voices.

    Args:
        rng: random generator; the draw is deterministic given its state.

    Returns:
        A voice within the ranges documented on :class:`VoiceIdentity`.

    """
    high = bool(rng.random() < 0.5)
    if high:
        f0 = rng.lognormal(math.log(205.0), 0.1)
        formant_scale = rng.normal(1.15, 0.04)
        breathiness = rng.uniform(0.1, 0.4)
    else:
        f0 = rng.lognormal(math.log(115.0), 0.1)
        formant_scale = rng.normal(1.0, 0.04)
        breathiness = rng.uniform(0.05, 0.3)
    return VoiceIdentity(
        f0_hz=float(np.clip(f0, 85.0, 260.0)),
        formant_scale=float(np.clip(formant_scale, 0.88, 1.25)),
        breathiness=float(breathiness),
        speaking_rate=float(rng.uniform(3.5, 5.5)),
        loudness_db=float(rng.uniform(-27.0, -19.0)),
    )


def _validate(
    expression: int, intensity: float, valence: float, arousal: float, seconds: float, sample_rate: int
) -> int:
    """Check the arguments of :func:`synthesize_voice` and return the number of samples."""
    if isinstance(expression, bool) or not isinstance(expression, (int, np.integer)):
        raise DataError(f"expression must be an integer class index, got {expression!r}.")
    if not 0 <= expression < len(EXPRESSIONS_8):
        raise DataError(
            f"expression must be in [0, {len(EXPRESSIONS_8)}) ({', '.join(EXPRESSIONS_8)}), got {expression}."
        )
    if not (math.isfinite(intensity) and 0.0 <= intensity <= 1.0):
        raise DataError(f"intensity must lie in [0, 1], got {intensity}.")
    for name, value in (("valence", valence), ("arousal", arousal)):
        if not (math.isfinite(value) and -1.0 <= value <= 1.0):
            raise DataError(f"{name} must lie in [-1, 1], got {value}.")
    if not (math.isfinite(seconds) and seconds > 0):
        raise DataError(f"seconds must be positive, got {seconds}.")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise DataError(f"sample_rate must be a positive integer number of Hz, got {sample_rate!r}.")
    if sample_rate < MIN_SAMPLE_RATE:
        raise DataError(f"sample_rate {sample_rate} Hz is too low for speech; the minimum is {MIN_SAMPLE_RATE} Hz.")
    n = int(round(seconds * sample_rate))
    if n < 1:
        raise DataError(f"{seconds} s at {sample_rate} Hz is less than one sample.")
    return n


def _prosody(
    voice: VoiceIdentity,
    expression: int,
    intensity: float,
    valence: float,
    arousal: float,
    rng: np.random.Generator,
) -> _Prosody:
    """Combine the voice, arousal, valence and the (randomly expressed) expression cue."""
    name = EXPRESSIONS_8[expression]
    cue = _EXPRESSION_CUES[name]
    # How strongly the cue shows in this utterance: absent in some, of random strength in the others.
    # Neutral has intensity 0 by convention, but its cue (flat prosody) still applies.
    strength = 1.0 if name == "neutral" else intensity
    k = strength * rng.uniform(0.4, 1.3) if rng.random() < _CUE_PROBABILITY else 0.0
    tremor_jitter = 0.003 * k if cue.tremolo > 0 else 0.0
    pitch_st = 2.5 * arousal + k * cue.pitch_st + rng.normal(0.0, 0.9)
    range_st = 2.5 * math.exp(0.4 * arousal + k * math.log(cue.range_factor) + rng.normal(0.0, 0.2))
    rate = voice.speaking_rate * (1.0 + 0.18 * arousal) * cue.rate_factor**k * rng.lognormal(0.0, 0.08)
    loudness = voice.loudness_db + 4.0 * arousal + k * cue.loudness_db + rng.normal(0.0, 1.5)
    breathiness = voice.breathiness + k * cue.breathiness + rng.normal(0.0, 0.03)
    tilt = 0.35 - 0.12 * arousal - 0.05 * valence + k * cue.tilt + rng.normal(0.0, 0.05)
    return _Prosody(
        f0_hz=voice.f0_hz * 2.0 ** (pitch_st / 12.0),
        range_st=float(np.clip(range_st, 0.3, 9.0)),
        declination_st_s=-1.2 + 0.8 * valence + k * cue.declination_st_s + rng.normal(0.0, 0.4),
        final_st=2.5 * valence + rng.normal(0.0, 1.0),
        rate=float(np.clip(rate, 1.5, 9.0)),
        pause_probability=float(np.clip((0.15 - 0.06 * arousal) * cue.pause_factor**k, 0.0, 0.6)),
        loudness_db=float(np.clip(loudness, -40.0, -15.0)),
        breathiness=float(np.clip(breathiness, 0.0, 1.0)),
        tilt=float(np.clip(tilt, 0.0, 0.85)),
        open_quotient=float(
            np.clip(0.6 - 0.08 * arousal + 0.15 * (breathiness - 0.2) + 0.5 * k * cue.tilt, 0.35, 0.85)
        ),
        jitter=0.006 + 0.004 * max(arousal, 0.0) + tremor_jitter + abs(rng.normal(0.0, 0.002)),
        shimmer=0.04 + 0.02 * max(arousal, 0.0) + abs(rng.normal(0.0, 0.01)),
        sweep_st=k * cue.sweep_st * rng.uniform(0.7, 1.3),
        tremolo_st=k * cue.tremolo,
        tremolo_hz=float(rng.uniform(5.0, 8.0)),
        creak=k * cue.creak,
    )


def _syllables(prosody: _Prosody, n: int, sample_rate: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Lay out syllables and pauses over the window.

    Returns:
        ``(starts, ends)``, int arrays (S,) of sample indices; the last syllable may run past ``n``.

    """
    mean_dur = 1.0 / prosody.rate
    starts: list[int] = []
    ends: list[int] = []
    t = rng.uniform(0.0, 0.15)
    while t * sample_rate < n:
        dur = mean_dur * float(np.clip(rng.lognormal(0.0, 0.25), 0.5, 2.0))
        starts.append(int(t * sample_rate))
        ends.append(max(int((t + dur) * sample_rate), starts[-1] + 2))
        t += dur
        if rng.random() < prosody.pause_probability:
            t += rng.uniform(0.08, 0.3)
    return np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)


def _f0_contour(
    prosody: _Prosody,
    starts: np.ndarray,
    ends: np.ndarray,
    creaky: np.ndarray,
    n: int,
    sample_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Smooth F0 contour in Hz (before jitter), built at a 200 Hz control rate.

    Returns:
        float64 array (n,).

    """
    control_rate = 200.0
    m = int(math.ceil(n / sample_rate * control_rate)) + 2
    tc = np.arange(m) / control_rate
    st = prosody.declination_st_s * tc
    # Slow random drift of the pitch level.
    knots = rng.normal(0.0, 0.5, size=int(tc[-1] / 0.4) + 2)
    st += np.interp(tc, np.arange(len(knots)) * 0.4, knots)
    s_c = starts / sample_rate
    e_c = ends / sample_rate
    accents = prosody.range_st * rng.uniform(-0.3, 1.0, size=len(starts))
    peaks = rng.uniform(0.3, 0.7, size=len(starts))
    phrase_end = np.ones(len(starts), dtype=bool)
    if len(starts) > 1:  # a syllable followed by a pause ends a phrase
        phrase_end[:-1] = (starts[1:] - ends[:-1]) > 0.05 * sample_rate
    sweep_at = int(rng.integers(0, min(len(starts), 3))) if prosody.sweep_st > 0 else -1
    for i in range(len(starts)):
        lo, hi = np.searchsorted(tc, [s_c[i], e_c[i]])
        if hi <= lo:
            continue
        u = (tc[lo:hi] - s_c[i]) / max(e_c[i] - s_c[i], 1e-6)
        # Accent: a raised-cosine hump peaking inside the syllable.
        shape = np.where(u < peaks[i], u / peaks[i], (1.0 - u) / (1.0 - peaks[i]))
        st[lo:hi] += accents[i] * 0.5 * (1.0 - np.cos(np.pi * shape))
        if phrase_end[i]:
            st[lo:hi] += prosody.final_st * u**2
        if i == sweep_at:
            st[lo:hi] += prosody.sweep_st * u
            st[hi:] += prosody.sweep_st * 0.5
    if prosody.tremolo_st > 0:
        st += prosody.tremolo_st * np.sin(2.0 * np.pi * prosody.tremolo_hz * tc + rng.uniform(0, 2 * np.pi))
    f0_c = prosody.f0_hz * 2.0 ** (st / 12.0)
    if creaky.any():
        for i in np.flatnonzero(creaky):
            lo, hi = np.searchsorted(tc, [s_c[i], e_c[i]])
            f0_c[lo:hi] *= 0.5
    f0_c = np.clip(f0_c, 40.0, min(600.0, 0.2 * sample_rate))
    return np.interp(np.arange(n) / sample_rate, tc, f0_c)


def _glottal_source(
    prosody: _Prosody, f0: np.ndarray, creak_gain: np.ndarray, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Differentiated Rosenberg pulse train with jitter, shimmer, tilt and aspiration noise.

    Args:
        prosody: utterance settings.
        f0: F0 in Hz per sample, float64 (n,).
        creak_gain: per-sample factor (>= 1) on jitter and shimmer (creaky stretches), float64 (n,).
        sample_rate: samples per second.
        rng: random generator.

    Returns:
        float64 array (n,), about unit RMS.

    """
    n = len(f0)
    phase = np.cumsum(f0) / sample_rate
    n_periods = int(phase[-1]) + 2
    period = phase.astype(np.int64)
    # Jitter: each glottal period gets its own length perturbation; shimmer: its own amplitude.
    jitter = rng.standard_normal(n_periods)[period] * prosody.jitter * creak_gain
    phase = np.cumsum(f0 * (1.0 + jitter)) / sample_rate + rng.random()
    period = phase.astype(np.int64)
    shimmer = 1.0 + rng.standard_normal(int(period[-1]) + 1)[period] * prosody.shimmer * creak_gain
    frac = phase - period
    oq = prosody.open_quotient
    # Rosenberg flow pulse tabulated over one period, read at each sample's phase within its period.
    grid = np.arange(_PULSE_TABLE_SIZE + 1) / _PULSE_TABLE_SIZE
    t_rise, t_fall = 0.65 * oq, 0.35 * oq
    table = np.where(
        grid < t_rise,
        0.5 * (1.0 - np.cos(np.pi * grid / t_rise)),
        np.where(grid < oq, np.cos(0.5 * np.pi * (grid - t_rise) / t_fall), 0.0),
    )
    flow = table[(frac * _PULSE_TABLE_SIZE).astype(np.int64)]
    source = np.diff(flow * shimmer, prepend=0.0)
    # Spectral tilt: one-pole low-pass (darker as tilt -> 1).
    a = prosody.tilt
    source = lfilter([1.0 - a], [1.0, -a], source)
    source /= max(float(np.sqrt(np.mean(source**2))), 1e-9)
    if prosody.breathiness > 0:
        gate = np.where(frac < oq, 1.0, 0.3)
        source += prosody.breathiness * 1.5 * _white(rng, n) * gate
    return source


def _white(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-variance white noise (uniform: several times faster to draw than Gaussian).

    Returns:
        float64 array (n,).

    """
    return (rng.random(n) - 0.5) * math.sqrt(12.0)


def _resonators(formants_hz: np.ndarray, bandwidths_hz: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Cascade of Klatt resonators (unit gain at 0 Hz) as one all-pole filter.

    Args:
        formants_hz: formant frequencies (K,).
        bandwidths_hz: bandwidths (K,).
        sample_rate: samples per second.

    Returns:
        ``(b, a)`` for :func:`scipy.signal.lfilter`: b (1,), a (2K'+1,); formants above 0.45 x the sample
        rate are dropped.

    """
    keep = formants_hz < 0.45 * sample_rate
    r = np.exp(-np.pi * bandwidths_hz[keep] / sample_rate)
    c1 = 2.0 * r * np.cos(2.0 * np.pi * formants_hz[keep] / sample_rate)
    c2 = -(r**2)
    a = np.ones(1)
    for k in range(len(c1)):
        a = np.convolve(a, [1.0, -c1[k], -c2[k]])
    return np.array([np.prod(1.0 - c1 - c2)]), a


def synthesize_voice(
    voice: VoiceIdentity,
    expression: int,
    intensity: float,
    valence: float,
    arousal: float,
    seconds: float,
    sample_rate: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Render one speech-like utterance of a subject in a given affective state.

    Args:
        voice: the subject's voice.
        expression: expression class index into :data:`~multimodal_fer.types.EXPRESSIONS_8`.
        intensity: expression intensity in [0, 1]; scales the expression's prosodic cue.
        valence: latent valence in [-1, 1].
        arousal: latent arousal in [-1, 1].
        seconds: duration in seconds (> 0).
        sample_rate: samples per second, an integer of at least :data:`MIN_SAMPLE_RATE`.
        rng: random generator; the output is deterministic given its state.

    Returns:
        float32 waveform (round(seconds * sample_rate),) within [-1, 1].

    Raises:
        DataError: an expression index outside the 8 classes, intensity outside [0, 1], valence or arousal
            outside [-1, 1], non-positive seconds or sample rate, or a sample rate below
            :data:`MIN_SAMPLE_RATE`.

    """
    n = _validate(expression, intensity, valence, arousal, seconds, sample_rate)
    prosody = _prosody(voice, expression, intensity, valence, arousal, rng)
    starts, ends = _syllables(prosody, n, sample_rate, rng)
    n_syl = len(starts)
    creaky = rng.random(n_syl) < prosody.creak

    f0 = _f0_contour(prosody, starts, ends, creaky, n, sample_rate, rng)
    creak_gain = np.ones(n)
    for i in np.flatnonzero(creaky):
        creak_gain[starts[i] : min(ends[i], n)] = 6.0
    source = _glottal_source(prosody, f0, creak_gain, sample_rate, rng)

    out = np.zeros(n)
    envelope = np.zeros(n)
    bandwidths = _BANDWIDTHS_HZ * voice.formant_scale
    vowels = rng.integers(0, len(_VOWELS_HZ), size=n_syl)
    loci = rng.integers(0, len(_F2_LOCI_HZ), size=n_syl)
    stress = rng.lognormal(0.0, 0.25, size=n_syl)
    for i in range(n_syl):
        lo, hi = int(starts[i]), int(min(ends[i], n))
        if hi - lo < 2:
            continue
        length = int(ends[i] - starts[i])
        vowel = _VOWELS_HZ[vowels[i]] * voice.formant_scale * rng.uniform(0.95, 1.05, size=3)
        onset = vowel.copy()
        onset[0] = min(vowel[0], 300.0 * voice.formant_scale)
        onset[1] = 0.5 * (vowel[1] + _F2_LOCI_HZ[loci[i]] * voice.formant_scale)
        seg = source[lo:hi]
        voiced = lfilter(*_resonators(vowel, bandwidths, sample_rate), seg)
        # Formants glide from the consonant locus to the vowel over the first 30 % of the syllable.
        n_glide = min(max(int(0.3 * length), 1), hi - lo)
        glide = np.arange(n_glide) / n_glide
        onset_part = lfilter(*_resonators(onset, bandwidths, sample_rate), seg[:n_glide])
        voiced[:n_glide] = (1.0 - glide) * onset_part + glide * voiced[:n_glide]
        u = np.arange(hi - lo) / length
        attack, release = rng.uniform(0.1, 0.3), rng.uniform(0.15, 0.35)
        env = np.minimum(np.minimum(u / attack, (1.0 - u) / release), 1.0)
        env = stress[i] * 0.5 * (1.0 - np.cos(np.pi * np.clip(env, 0.0, 1.0)))
        out[lo:hi] = env * voiced
        envelope[lo:hi] = env
        if rng.random() < 0.6:  # fricative/burst onset
            burst = int(rng.uniform(0.02, 0.06) * sample_rate)
            b_hi = min(lo + burst, hi)
            decay = np.linspace(1.0, 0.0, b_hi - lo)
            hiss = np.diff(_white(rng, b_hi - lo + 2), n=2)  # about +12 dB/octave: fricative-like
            out[lo:b_hi] += stress[i] * rng.uniform(0.05, 0.2) * decay * hiss
    if prosody.tremolo_st > 0:  # fear: amplitude tremolo at the vibrato rate
        t = np.arange(n) / sample_rate
        out *= 1.0 + 0.2 * (prosody.tremolo_st / 0.8) * np.sin(2.0 * np.pi * prosody.tremolo_hz * t)

    speech = envelope > 0.3
    rms = float(np.sqrt(np.mean(out[speech] ** 2))) if speech.any() else 1.0
    out *= 10.0 ** (prosody.loudness_db / 20.0) / max(rms, 1e-9)
    out += _white(rng, n) * 10.0 ** (rng.uniform(-62.0, -50.0) / 20.0)
    fade = min(n, int(0.005 * sample_rate))
    if fade > 1:
        out[n - fade :] *= np.linspace(1.0, 0.0, fade)
    # Soft limiter (like a recorder's): linear below 0.7, smoothly saturating towards 1 above.
    over = np.abs(out) > _LIMIT_KNEE
    if over.any():
        mag = np.abs(out[over])
        out[over] = np.sign(out[over]) * (
            _LIMIT_KNEE + (1.0 - _LIMIT_KNEE) * np.tanh((mag - _LIMIT_KNEE) / (1.0 - _LIMIT_KNEE))
        )
    return np.clip(out, -1.0, 1.0).astype(np.float32)
