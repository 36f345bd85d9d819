"""The clinical review page stands on its own: every label it uses is in its legend, every source
it cites is listed in full, and `--check` fails when a citation names something undefined."""

import shutil
from pathlib import Path

import pytest

from cds_service.knowledge import clear_cache, load_knowledge, review

REPO_SEEDS = Path(__file__).resolve().parents[1] / "seeds"


@pytest.fixture
def seeds_copy(tmp_path) -> Path:
    # sources.toml may name files of the repository (`location`): copy the seeds into a
    # repository-shaped tree
    target = tmp_path / "seeds"
    shutil.copytree(REPO_SEEDS, target)
    clear_cache()
    yield target
    clear_cache()


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def test_every_label_a_citation_uses_is_in_the_legend_or_the_source_list():
    sources, legend = review.load_sources(REPO_SEEDS)
    page = review.render(load_knowledge())
    legend_part = page.split("## Legend", 1)[1].split("## Sources", 1)[0]
    source_part = page.split("## Sources", 1)[1].split("## Card topics", 1)[0]
    used = set()
    for _where, text in review.citation_texts(REPO_SEEDS):
        used |= review.cited_labels(text)
    assert {"Catalog", "Seed", "Reference E1", "V-L", "V-2", "S1"} <= used  # what the page cites today
    by_label = {s.label: s for s in sources.values() if s.label}
    for label in used:
        if label in by_label:
            assert f"**`{by_label[label].id}`** ({label})" in source_part
        elif label.startswith("["):
            assert f"**`{label[1:-1]}`**" in source_part
        else:
            assert f"\n| {label} |" in legend_part, label


def test_every_source_has_a_full_reference():
    sources, _legend = review.load_sources(REPO_SEEDS)
    page = review.render(load_knowledge())
    for source in sources.values():
        assert source.title and source.publisher and source.date and source.what
        assert source.url or source.doi or source.location
        line = next(line for line in page.splitlines() if f'id="source-{source.id}"' in line)
        assert source.title in line and source.date in line
        if source.doi:
            assert f"https://doi.org/{source.doi}" in line


def test_the_primary_sources_have_their_stable_ids():
    sources, _legend = review.load_sources(REPO_SEEDS)
    dois = {
        "ects-2021": "10.1210/clinem/dgaa756",
        "aaoms-2022": "10.1016/j.joms.2022.02.008",
        "kdigo-2017": "10.1016/j.kisu.2017.04.001",
        "endocrine-society-2011": "10.1210/jc.2011-0385",
    }
    for sid, doi in dois.items():
        assert sources[sid].doi == doi
    for sid in ("prolia-pi", "xgeva-pi", "reclast-pi", "actonel-pi", "fosamax-pi"):
        assert any(url.startswith(("https://dailymed.nlm.nih.gov/", "https://nctr-crs.fda.gov/fdalabel/"))
                   for url in (sources[sid].url, *sources[sid].also))
    assert "49e5afe9-a0c7-40c4-af9f-f287a80c5c88" in sources["prolia-pi"].url
    assert {"ctcae-5", "seed", "catalog"} <= set(sources)


def test_check_fails_when_a_citation_names_an_undefined_label(seeds_copy, capsys):
    _append(seeds_copy / "thresholds.toml", '''
[thresholds.test_only_days]
value = 1
unit = "days"
source = "[who-2099] table 3; S23; Reference E9 (V-X)"
''')
    assert review.main(["--check", "--seeds", str(seeds_copy)]) == 1
    err = capsys.readouterr().err
    for label in ("[who-2099]", "S23", "Reference E9", "V-X"):
        assert f"thresholds.toml.thresholds.test_only_days.source: cites {label}, which sources.toml does not define" in err
    assert review.main(["--write", "--seeds", str(seeds_copy)]) == 1  # nothing written over it either


def test_a_new_source_cited_by_its_id_is_listed_and_linked(seeds_copy):
    _append(seeds_copy / "sources.toml", '''
[sources.who-2099]
title = "A test guideline"
publisher = "A test publisher"
date = "2099"
doi = "10.9999/test.2099"
what = "Only for this test."
''')
    text = (seeds_copy / "topics.toml").read_text(encoding="utf-8")
    marker = '[topics.dental-clearance]\n'
    start = text.index("citation = ", text.index(marker))
    text = text[:start] + 'citation = "[who-2099] section 1; ' + text[start + len('citation = "'):]
    (seeds_copy / "topics.toml").write_text(text, encoding="utf-8")
    assert review.main(["--write", "--seeds", str(seeds_copy)]) == 0
    assert review.main(["--check", "--seeds", str(seeds_copy)]) == 0
    page = (seeds_copy / "README.md").read_text(encoding="utf-8")
    topic = page.split("### `dental-clearance`", 1)[1].split("### ", 1)[0]
    assert "[`who-2099`](#source-who-2099)" in topic
    assert "DOI [10.9999/test.2099](https://doi.org/10.9999/test.2099)" in page


@pytest.mark.parametrize(
    "entry, message",
    [
        ('[sources.no-address]\ntitle = "t"\npublisher = "p"\ndate = "2020"\nwhat = "w"\n', "give a url, a doi"),
        ('[sources.bad-doi]\ntitle = "t"\npublisher = "p"\ndate = "2020"\nwhat = "w"\ndoi = "doi.org/10.1"\n', "is not a DOI"),
        ('[sources.no-date]\ntitle = "t"\npublisher = "p"\nwhat = "w"\nurl = "https://example.org"\n', "date required"),
        ('[sources.Bad_Id]\ntitle = "t"\npublisher = "p"\ndate = "2020"\nwhat = "w"\nurl = "https://example.org"\n', "lower-kebab-case"),
        ('[[legend]]\nlabel = "XYZ"\nmeans = "m"\nsources = ["nowhere"]\n', "no such source"),
        ('[[legend]]\nlabel = "Seed"\nmeans = "again"\n', "labels defined twice"),
    ],
)
def test_an_incomplete_source_list_is_refused(seeds_copy, capsys, entry, message):
    _append(seeds_copy / "sources.toml", "\n" + entry)
    assert review.main(["--check", "--seeds", str(seeds_copy)]) == 2
    assert message in capsys.readouterr().err
