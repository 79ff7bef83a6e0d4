"""Class-name parsing shared by the API, CLI and web demo."""

import json

import pytest

from fgaseg.errors import ClassNamesError
from fgaseg.predict.class_names import parse_class_names, read_class_file


def test_comma_split_and_strip():
    assert parse_class_names(" cat,grass ,  sky blue ") == ["cat", "grass", "sky blue"]
    assert parse_class_names(["cat", " dog "]) == ["cat", "dog"]
    assert parse_class_names(("building, edifice", "road")) == ["building, edifice", "road"]


def test_non_ascii_names_are_kept():
    names = parse_class_names("chat, 猫, Straßenbahn, кошка, 🐈")
    assert names == ["chat", "猫", "Straßenbahn", "кошка", "🐈"]


@pytest.mark.parametrize("bad", ["", "   ", [], ()])
def test_empty_list(bad):
    with pytest.raises(ClassNamesError, match="empty"):
        parse_class_names(bad)


@pytest.mark.parametrize("bad, position", [("cat,,sky", "#2"), ("cat, ", "#2"),
                                           (["cat", "  "], "#2"), (",cat", "#1")])
def test_blank_name(bad, position):
    with pytest.raises(ClassNamesError, match="blank") as info:
        parse_class_names(bad)
    assert position in str(info.value)


@pytest.mark.parametrize("bad", ["cat, dog, cat", "Cat, cat", ["sky  blue", "Sky Blue"]])
def test_duplicates_are_refused(bad):
    with pytest.raises(ClassNamesError, match="twice"):
        parse_class_names(bad)


def test_duplicates_allowed_on_request():
    assert parse_class_names(["a", "a"], allow_duplicates=True) == ["a", "a"]


def test_non_string_entry():
    with pytest.raises(ClassNamesError, match="not a string"):
        parse_class_names(["cat", 3])
    with pytest.raises(ClassNamesError):
        parse_class_names(None)
    with pytest.raises(ClassNamesError, match="string or a list"):
        parse_class_names(5)


def test_many_classes_are_fine():
    names = parse_class_names([f"class {i}" for i in range(1500)])
    assert len(names) == 1500


def test_class_files(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps(["building, edifice", "猫"]), encoding="utf-8")
    assert read_class_file(tmp_path / "c.json") == ["building, edifice", "猫"]
    (tmp_path / "c.txt").write_text("# my classes\ncat\n\n grass \nsky\n", encoding="utf-8")
    assert read_class_file(tmp_path / "c.txt") == ["cat", "grass", "sky"]


@pytest.mark.parametrize("content, message", [
    ("", "no names"), ("# only a comment\n\n", "no names"), ("[1, 2", "invalid JSON"),
    ('["cat", "cat"]', "twice"), ('["cat", ""]', "blank"), ("[]", "no names"),
])
def test_bad_class_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ClassNamesError, match=message) as info:
        read_class_file(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_or_binary_class_file(tmp_path):
    with pytest.raises(ClassNamesError, match="not found"):
        read_class_file(tmp_path / "none.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ClassNamesError, match="UTF-8"):
        read_class_file(tmp_path / "bin.txt")
