"""URL and host validation for executor params."""

import pytest

from executors.validate import normalise_host, normalise_web_url


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://Example.ORG/Path?q=1#f", "https://example.org/Path?q=1#f"),
        ("http://bücher.example/", "http://xn--bcher-kva.example/"),
        ("https://example.org:8443/", "https://example.org:8443/"),
        ("https://127.0.0.1/", "https://127.0.0.1/"),
        ("https://[::1]:80/", "https://[::1]:80/"),
        ("HTTPS://example.org", "https://example.org"),
    ],
)
def test_good_urls_are_normalised(url, expected):
    assert normalise_web_url(url) == expected


@pytest.mark.parametrize(
    "url, why",
    [
        ("file:///etc/passwd", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("data:text/html,<script>", "scheme"),
        ("https://user:pass@example.org/", "credentials"),
        ("https://user@example.org/", "credentials"),
        ("https://example.org/a b", "whitespace"),
        ("https://example.org/\x00", "control"),
        ("https://example.org\\@evil.com/", "backslash"),
        ("https:///path", "no host"),
        ("https://exa_mple.org/", "label"),
        ("https://example.org:99999/", "port"),
        ("https://example.org/ü", "ASCII"),
        ("https://-bad.example/", "label"),
        ("https://example.org/" + "a" * 3000, "longer"),
        ("https://1.2.3/", "numeric"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url, why):
    with pytest.raises(ValueError) as info:
        normalise_web_url(url)
    assert why.split()[0].lower() in str(info.value).lower()


def test_trailing_dot_is_dropped_and_case_folded():
    assert normalise_host("Example.ORG.") == "example.org"
