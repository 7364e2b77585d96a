"""User pairs from two folders (texts and WAV audio paired by file name), WAV reading, subsets, voice names."""

import math
import wave

import numpy as np
import pytest
import torch

from distillkit.paired import PairedDataset, PairsError, load_pair_folders
from distillkit.paired.files import read_wav
from distillkit.paired.speech import Voice


def write_tone(path, hertz, seconds=0.5, rate=16000, channels=1):
    """A sine tone as 16-bit PCM WAV."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.5 * np.sin(2 * math.pi * hertz * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as file:
        file.setnchannels(channels)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(np.repeat(samples, channels).tobytes())


def test_two_folders_pair_up_by_file_name_as_text_and_log_mel_views(tmp_path):
    (tmp_path / "text").mkdir()
    (tmp_path / "audio").mkdir()
    for stem, hertz in (("b", 880), ("a", 440)):
        (tmp_path / "text" / f"{stem}.txt").write_text(f"tone {hertz}\n")
        write_tone(tmp_path / "audio" / f"{stem}.wav", hertz)
    (tmp_path / "labels.csv").write_text("name,label\na,low\nb,high\n")
    pairs = load_pair_folders(tmp_path / "text", tmp_path / "audio", labels=tmp_path / "labels.csv", max_seconds=1.0)
    assert len(pairs) == 2 and pairs[0]["name"] == "a" and pairs[0]["text"] == "tone 440"
    assert pairs[0]["audio"].shape == (40, 101)  # padded to max_seconds: 100 hops of 10 ms + 1
    assert pairs.targets.tolist() == [1, 0]  # labels in sorted order: high, low
    assert not torch.equal(pairs[0]["audio"], pairs[1]["audio"])  # negative control: the two tones differ


def test_a_stereo_wav_is_averaged_to_one_channel(tmp_path):
    write_tone(tmp_path / "mono.wav", 440)
    write_tone(tmp_path / "stereo.wav", 440, channels=2)
    mono, rate = read_wav(tmp_path / "mono.wav")
    stereo, _ = read_wav(tmp_path / "stereo.wav")
    assert rate == 16000 and torch.allclose(mono, stereo) and 0.45 < float(mono.abs().max()) <= 0.5


@pytest.mark.parametrize("problem, message", [
    ("orphan", "no partner of the same name"),
    ("long", "longer than the maximum of 1.0 s"),
    ("empty", "empty text"),
    ("kind", "a view is a .txt"),
    ("label", "no label for b"),
    ("folder", "pairs folder not found"),
])
def test_bad_folders_are_refused_with_the_file_named(tmp_path, problem, message):
    (tmp_path / "en").mkdir()
    (tmp_path / "fr").mkdir()
    for stem in ("a", "b"):
        (tmp_path / "en" / f"{stem}.txt").write_text("Germany")
        (tmp_path / "fr" / f"{stem}.txt").write_text("Allemagne")
    labels = None
    if problem == "orphan":
        (tmp_path / "en" / "c.txt").write_text("France")
    elif problem == "long":
        write_tone(tmp_path / "fr" / "b.wav", 440, seconds=1.5)
        (tmp_path / "fr" / "b.txt").unlink()
    elif problem == "empty":
        (tmp_path / "fr" / "b.txt").write_text("  \n")
    elif problem == "kind":
        (tmp_path / "fr" / "notes.md").write_text("x")
    elif problem == "label":
        labels = tmp_path / "labels.csv"
        labels.write_text("name,label\na,country\n")
    second = tmp_path / ("missing" if problem == "folder" else "fr")
    with pytest.raises(PairsError, match=message):
        load_pair_folders(tmp_path / "en", second, labels=labels, max_seconds=1.0)


def test_a_subset_keeps_views_labels_and_extra_fields_and_numbers_from_zero():
    pairs = PairedDataset({"en": ["a", "b", "c"], "fr": ["x", "y", "z"]}, targets=[0, 1, 2], extra={"id": [7, 8, 9]})
    part = pairs.subset([2, 0])
    assert [part[i] for i in range(2)] == [{"en": "c", "fr": "z", "id": 9, "target": torch.tensor(2), "index": 0},
                                          {"en": "a", "fr": "x", "id": 7, "target": torch.tensor(0), "index": 1}]


def test_a_voice_is_parsed_from_its_key_and_a_bad_one_is_refused():
    voice = Voice("en+f2", 160, 60)
    assert Voice.parse(voice.key) == voice and Voice.parse("en+m3") == Voice("en+m3")
    for bad in ("", "en@fast", "en@1@2@3"):
        with pytest.raises(PairsError, match="NAME"):
            Voice.parse(bad)
    with pytest.raises(PairsError, match="rate must be"):
        Voice.parse("en@20")
