"""The CLIP tokenizer must give exactly OpenAI's ids.

Expected ids were produced by OpenAI's reference ``SimpleTokenizer`` (with ftfy installed),
independently of this package's code.
"""

import warnings

import pytest
import torch

from fgaseg.clip import EOT_TOKEN, SOT_TOKEN, decode, tokenize
from fgaseg.clip.tokenizer import encode

REFERENCE_IDS = [
    ("a photo of a cat", [320, 1125, 539, 320, 2368]),
    ("A Photo  of a   CAT ", [320, 1125, 539, 320, 2368]),
    ("A photo of a traffic light in the scene", [320, 1125, 539, 320, 3399, 1395, 530, 518, 3562]),
    ("café über 日本 😀", [15304, 6522, 1516, 39121, 19277, 361, 7334]),
    ("naïve Ünïcödé façade", [1097, 35689, 563, 6522, 77, 35689, 66, 7255, 67, 4166, 778, 10067, 1928]),
    ("Ελληνικά кириллица", [138, 113, 138, 119, 138, 119, 138, 115, 138, 121, 138, 117, 138, 118,
                            138, 361, 27152, 16701, 16370, 29503, 119, 47611, 16701, 141, 228, 27080]),
    ("straße", [1894, 127, 253, 324]),
    ("don\u2019t \u201cquoted\u201d", [847, 713, 257, 27706, 257]),  # curly quotes straightened
    ("\ufb01sh \ufb02ower", [2759, 4055]),  # Latin ligatures split
    ("ＨＥＬＬＯ，\u3000ｗｏｒｌｄ！", [3306, 267, 1002, 256]),  # full-width forms
    ("&amp; x &amp;amp; y", [261, 343, 261, 344]),  # HTML entities, unescaped twice
    ("3.14159 42nd 1,000", [274, 269, 272, 275, 272, 276, 280, 275, 273, 1764, 272, 267, 271, 271, 271]),
    ("hello-world_foo/bar", [3306, 268, 1002, 318, 23435, 270, 2411]),
    ("e\u0301", [4166]),  # decomposed accent composed (NFC)
]


@pytest.mark.parametrize("text,expected", REFERENCE_IDS)
def test_bpe_ids_match_openai(text, expected):
    assert encode(text) == expected


def test_tokenize_adds_sot_eot_and_pads_with_zero():
    ids = tokenize(["a photo of a cat", "dog"])
    assert ids.shape == (2, 77) and ids.dtype == torch.long
    assert ids[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert (ids[0, 7:] == 0).all()
    assert ids[1, 0] == SOT_TOKEN and ids[1, 2] == EOT_TOKEN and (ids[1, 3:] == 0).all()
    assert tokenize("a photo of a cat").shape == (1, 77)


def test_eot_is_the_largest_id_so_argmax_finds_it():
    ids = tokenize(["a photo of a cat", "café 😀"])
    for row in ids:
        assert row[row.argmax()] == EOT_TOKEN


def test_too_long_text_is_truncated_keeping_eot_with_warning():
    text = "a photo of " + "a very " * 60 + "big cat"  # 125 BPE tokens
    with pytest.warns(UserWarning, match="truncated"):
        ids = tokenize([text, "cat"])
    assert ids.shape == (2, 77)
    assert ids[0, 0] == SOT_TOKEN and ids[0, -1] == EOT_TOKEN
    assert ids[0, 1:76].tolist() == encode(text)[:75]
    assert ids[1, :3].tolist() == [SOT_TOKEN, 2368, EOT_TOKEN]


def test_short_text_does_not_warn_and_custom_context_length():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ids = tokenize("a photo of a cat", context_length=7)
    assert ids[0].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_empty_text_and_decode_round_trip():
    assert tokenize("")[0, :3].tolist() == [SOT_TOKEN, EOT_TOKEN, 0]
    assert decode(tokenize("A Photo of a CAT")[0].tolist()) == "a photo of a cat"
