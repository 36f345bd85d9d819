"""Every card cites primary sources (card catalog v2, "Sources a card may cite"): each topic names
its documents in seeds/sources.toml, at least one a primary source with a stable URL; the seed is
cited only in addition; no URL points at a mirror, proxy, marketing page or superseded agency page."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest

from cds_service.knowledge import load_knowledge

# Hosts that are never a primary source: library proxies, document mirrors, label paraphrases,
# manufacturers' marketing sites, AI summaries.
DENIED_HOSTS = (
    "dbpia.nl.go.kr", "scribd.com", "documents.pub", "dokumen.tips", "pdffox.com", "studylib.net", "docslib.org",
    "wikidoc.org", "droracle.ai", "blackboxrx.com", "medicinenet.com", "rxlist.com", "globalrph.com",
    "pharmacy-near-me.com", "mims.com", "cancertherapyadvisor.com", "prescriberpoint.com", "healthline.com",
    "oncohemakey.com", "guidelinecentral.com", "researchgate.net", "proliahcp.com", "prolia.com", "xgeva.com",
    "amgen.com",
)
# Agency pages superseded by the current label (the 2013 MedWatch safety-labeling page).
DENIED_URL_PARTS = ("/Safety/MedWatch/", "/ucm343116")
URL = re.compile(r"https?://[^\s)\"'>]+")

KB = load_knowledge()
TOPICS = sorted(KB.topics)


def is_denied(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return (
        any(host == denied or host.endswith("." + denied) for denied in DENIED_HOSTS)
        or any(part in url for part in DENIED_URL_PARTS)
        or "proxy" in host
    )


@pytest.mark.parametrize("code", TOPICS)
def test_every_topic_cites_a_primary_source_with_a_url(code):
    topic = KB.topics[code]
    cited = [KB.sources[source_id] for source_id in topic.sources]
    primary = [source for source in cited if source.primary]
    assert primary, f"{code} cites no primary source: {topic.sources}"
    assert all(source.url for source in primary), code
    assert topic.sources[0] != "seed", f"{code}: the seed may be cited in addition, never first or alone"
    assert topic.source_url in {source.url for source in primary}, f"{code}: the card's source.url is not one of its primary sources"


@pytest.mark.parametrize("code", TOPICS)
def test_the_citation_text_and_the_source_list_agree_about_the_seed(code):
    topic = KB.topics[code]
    assert ("Seed" in topic.citation) == ("seed" in topic.sources), code


def test_no_url_is_a_mirror_proxy_marketing_or_superseded_page():
    urls = {source.url for source in KB.sources.values() if source.url}
    for topic in KB.topics.values():
        urls |= set(URL.findall(topic.citation)) | {topic.source_url}
    denied = sorted(url for url in urls if is_denied(url))
    assert not denied, denied


def test_the_deny_list_catches_the_urls_version_1_cited():
    for url in ("https://dbpia.nl.go.kr/jcem/article/106/1/264/5939974",
                "https://www.proliahcp.com/patient-profiles/starting-patients",
                "https://www.fda.gov/Safety/MedWatch/SafetyInformation/ucm343116.htm"):
        assert is_denied(url), url
    assert not is_denied(KB.sources["prolia-pi"].url)


def test_journal_sources_link_their_doi_through_doi_org():
    for source_id in ("ects-2021", "aaoms-2022", "kdigo-2017", "endocrine-society-2011"):
        assert KB.sources[source_id].url.startswith("https://doi.org/10."), source_id
    assert KB.sources["ects-2021"].url == "https://doi.org/10.1210/clinem/dgaa756"
    assert KB.sources["aaoms-2022"].url == "https://doi.org/10.1016/j.joms.2022.02.008"


def test_every_source_a_card_cites_says_how_it_was_checked():
    cited = {sid for topic in KB.topics.values() for sid in topic.sources}
    for sid in cited:
        assert len(KB.sources[sid].verification) > 40, sid
    assert KB.sources["seed"].primary is False and KB.sources["seed"].url is None
