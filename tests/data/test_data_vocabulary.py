"""Shipped class-name lists and load_vocabulary."""

import json
import subprocess
from pathlib import Path

import pytest

from fgaseg.data.vocabulary import VOCABULARY_FILES, list_vocabularies, load_vocabulary
from fgaseg.errors import ClassNamesError

OFFICIAL = Path("/work/.mirror/cvlab-kaist+CAT-Seg/repo")


@pytest.mark.parametrize("name,count", [("coco171", 171), ("ade150", 150), ("ade847", 847),
                                        ("pc59", 59), ("pc459", 459), ("voc20", 20),
                                        ("voc20b", 59)])
def test_counts(name, count):
    names = load_vocabulary(name)
    assert len(names) == count and all(isinstance(n, str) and n.strip() for n in names)


def test_details_kept_byte_exact():
    assert load_vocabulary("ade150")[7] == "bed "                 # the official stray space
    assert load_vocabulary("ade847")[1] == "building, edifice"    # synonyms in one string
    assert load_vocabulary("voc20b")[:20] == load_vocabulary("voc20")
    assert load_vocabulary("pc459")[0] == "accordion"
    assert load_vocabulary("A-150") == load_vocabulary("ade150")  # alias
    assert load_vocabulary("coco") == load_vocabulary("coco171")
    assert set(list_vocabularies()) == set(VOCABULARY_FILES)


@pytest.mark.skipif(not OFFICIAL.exists(), reason="official repository mirror not present")
@pytest.mark.parametrize("filename", sorted(set(VOCABULARY_FILES.values())))
def test_identical_to_official_lists(filename):
    official = subprocess.run(["git", "-C", str(OFFICIAL), "show", f"HEAD:datasets/{filename}"],
                              capture_output=True, check=True).stdout
    import fgaseg.data
    ours = (Path(fgaseg.data.__file__).parent / "classnames" / filename).read_bytes()
    assert ours == official


def test_files(tmp_path):
    txt = tmp_path / "mine.txt"
    txt.write_text("cat\n\nsofa, couch\n")
    assert load_vocabulary(txt) == ["cat", "sofa, couch"]
    js = tmp_path / "mine.json"
    js.write_text(json.dumps(["a", "b"]))
    assert load_vocabulary(str(js)) == ["a", "b"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"a": 1}))
    with pytest.raises(ClassNamesError, match="list"):
        load_vocabulary(bad)
    blank = tmp_path / "blank.json"
    blank.write_text(json.dumps(["a", " "]))
    with pytest.raises(ClassNamesError, match="non-blank"):
        load_vocabulary(blank)
    with pytest.raises(ClassNamesError, match="unknown vocabulary"):
        load_vocabulary("no-such-vocab")
