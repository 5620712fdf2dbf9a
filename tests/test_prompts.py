"""Prompt sets: the built-in crack/generic sets and user YAML files."""

from __future__ import annotations

from pathlib import Path

import pytest

import crackseg
from crackseg.base.errors import ConfigError, CracksegError
from crackseg.testing import PromptSetContract
from crackseg_crackclip.prompts import WINCLIP_TEMPLATES, PromptSet, load_prompt_file


class TestCrackPromptsContract(PromptSetContract):
    name = "crack"


class TestGenericPromptsContract(PromptSetContract):
    name = "generic"
    params = {"object": "concrete wall"}


def test_templates_are_the_35_winclip_templates() -> None:
    assert len(WINCLIP_TEMPLATES) == 35
    assert len(set(WINCLIP_TEMPLATES)) == 35
    assert WINCLIP_TEMPLATES[0] == "a bad photo of a {}."
    assert WINCLIP_TEMPLATES[-1] == "this is one {} in the scene."


def test_crack_prompt_set_counts_and_sentences() -> None:
    s = crackseg.create_prompt_set("crack").sentences()
    assert set(s) == {"normal", "crack"}
    assert (len(s["normal"]), len(s["crack"])) == (280, 490)
    assert s["normal"][0] == "a bad photo of a pavement."
    assert s["normal"][-1] == "this is one smooth pavement in the scene."
    assert "a photo of a pavement with narrow break and opening." in s["crack"]
    assert s["crack"][-1] == "this is one fissure, tear, crevice, break, pavement in the scene."
    assert len(set(s["crack"])) == 490


def test_generic_prompt_set_counts_and_object_word() -> None:
    s = crackseg.create_prompt_set("generic", object="concrete wall").sentences()
    assert (len(s["normal"]), len(s["crack"])) == (245, 175)
    assert s["crack"][0] == "a bad photo of a damaged concrete wall."
    assert not any("smooth" in t for t in s["normal"])
    assert all("concrete wall" in t for t in s["normal"] + s["crack"])


def test_generic_states_are_a_subset_of_crack_states() -> None:
    crack = crackseg.create_prompt_set("crack")
    generic = crackseg.create_prompt_set("generic")
    assert generic.normal == crack.normal[:7]
    assert set(generic.crack) < set(crack.crack)


def test_prompt_set_rejects_bad_object() -> None:
    with pytest.raises(ConfigError, match="object"):
        crackseg.create_prompt_set("crack", object="  ")


def _write(tmp_path: Path, text: str, name: str = "p.yaml") -> str:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def test_yaml_prompt_file_defaults_and_override(tmp_path: Path) -> None:
    path = _write(tmp_path, "normal: ['flawless {}', 'clean {}']\ncrack: ['{} with crack']\n")
    ps = crackseg.create_prompt_set(path)
    s = ps.sentences()
    assert (len(s["normal"]), len(s["crack"])) == (70, 35)
    assert s["crack"][0] == "a bad photo of a pavement with crack."
    s2 = crackseg.create_prompt_set(path, object="bridge deck").sentences()
    assert s2["crack"][0] == "a bad photo of a bridge deck with crack."


def test_yaml_prompt_file_with_own_templates_and_object(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "object: concrete wall\ntemplates: ['{}']\nnormal: ['a photo of an intact {}.']\n"
        "crack: ['a photo of a cracked {}.', 'a {} with a hairline crack.']\n",
    )
    ps = load_prompt_file(path)
    assert isinstance(ps, PromptSet)
    assert ps.sentences() == {
        "normal": ["a photo of an intact concrete wall."],
        "crack": ["a photo of a cracked concrete wall.", "a concrete wall with a hairline crack."],
    }


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("normal: ['{}']\n", "missing key 'crack'"),
        ("normal: ['{}']\ncrack: []\n", "'crack' is empty"),
        ("normal: '{}'\ncrack: ['{}']\n", "must be a list"),
        ("normal: ['flawless']\ncrack: ['{}']\n", "exactly one '{}'"),
        ("normal: ['{} and {}']\ncrack: ['{}']\n", "exactly one '{}'"),
        ("normal: ['{x}']\ncrack: ['{}']\n", "exactly one '{}'"),
        ("normal: ['{']\ncrack: ['{}']\n", "not a valid pattern"),
        ("normal: [3]\ncrack: ['{}']\n", "must be a string"),
        ("normal: ['{}']\ncrack: ['{}']\ntemplate: ['{}']\n", "did you mean 'templates'"),
        ("normal: ['{}']\ncrack: ['{}']\ntemplates: ['a photo']\n", "templates[0]"),
        ("normal: ['{}']\ncrack: ['{}']\nobject: [1]\n", "'object' must be a string"),
        ("- a\n- b\n", "expected a mapping"),
        ("", "empty file"),
        ("normal: ['{}'\ncrack: x\n", "invalid YAML at line"),
    ],
)
def test_yaml_prompt_file_errors_are_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(CracksegError) as info:
        crackseg.create_prompt_set(path)
    msg = str(info.value)
    assert fragment in msg
    assert path in msg
    assert "\n" not in msg


def test_missing_prompt_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found") as info:
        crackseg.create_prompt_set(str(tmp_path / "nope.yaml"))
    assert "\n" not in str(info.value)


def test_unknown_prompt_file_parameter(tmp_path: Path) -> None:
    path = _write(tmp_path, "normal: ['{}']\ncrack: ['{}']\n")
    with pytest.raises(ConfigError, match="colour' is unknown"):
        crackseg.create_prompt_set(str(path), colour="red")
