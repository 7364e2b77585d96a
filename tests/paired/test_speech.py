"""Speech synthesis: deterministic per text and voice, refuses bad input; log-mel features; the disk cache."""

import pytest
import torch

from distillkit.paired import PairsError
from distillkit.paired.speech import SpeechCache, Synthesizer, Voice, log_mel, mel_filterbank

pytest.importorskip("espeakng_loader")


def test_the_same_text_and_voice_give_the_same_samples_and_another_voice_does_not():
    synthesizer = Synthesizer()
    first = synthesizer.speak("United States", Voice("en+f2", rate=160, pitch=60))
    synthesizer.speak("France", Voice("en+m3"))  # something else in between: no state carries over
    again = synthesizer.speak("United States", Voice("en+f2", rate=160, pitch=60))
    assert torch.equal(first, again)
    other = synthesizer.speak("United States", Voice("en+m3", rate=160, pitch=60))
    assert not (len(other) == len(first) and torch.equal(other, first))  # negative control
    assert 0.3 < len(first) / synthesizer.sample_rate < 3.0 and float(first.abs().max()) <= 1.0


@pytest.mark.parametrize("text, voice, message", [
    ("", Voice(), "empty text"),
    ("hello", Voice("xx-nothing"), "no voice 'xx-nothing'"),
    ("a very long sentence " * 20, Voice(), "longer than the maximum"),
])
def test_bad_speech_requests_are_refused(text, voice, message):
    with pytest.raises(PairsError, match=message):
        Synthesizer(max_seconds=2.0).speak(text, voice)
    with pytest.raises(PairsError, match="pitch must be 0..99"):
        Voice("en", pitch=120)


def test_log_mel_has_one_frame_per_hop_and_the_filterbank_covers_the_spectrum():
    bank = mel_filterbank(40, 1024, 22050)
    assert bank.shape == (40, 513) and float(bank.max()) <= 1.0 and bool((bank.sum(0)[5:-5] > 0).all())
    wave = torch.sin(torch.arange(22050) / 22050 * 2 * torch.pi * 440)  # one second of 440 Hz
    features = log_mel(wave, 22050)
    assert features.shape == (40, 1 + 22050 // 220)
    peak = int(features.mean(1).argmax())
    mels = torch.linspace(0, 2595 * torch.log10(torch.tensor(1 + 11025 / 700)), 42)
    centres = (700 * (10 ** (mels / 2595) - 1))[1:-1]  # filter k is centred on point k + 1
    assert abs(peak - int((centres - 440).abs().argmin())) <= 1  # the loudest band is the one around 440 Hz


def test_the_cache_synthesizes_once_and_reads_after(tmp_path):
    cache = SpeechCache(tmp_path / "speech")
    wave = cache.speak("Germany", Voice("en"))
    files = list((tmp_path / "speech").rglob("*.npy"))
    assert len(files) == 1
    assert torch.equal(cache.speak("Germany", Voice("en")), wave)
    assert len(list((tmp_path / "speech").rglob("*.npy"))) == 1
