"""Whatever text a configuration file holds, load() gives a Config or a ConfigError."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nginxws.conf import Config, ConfigError, load

CORPUS = Path(__file__).resolve().parents[1] / "conf_corpus"
VALID = sorted((CORPUS / "valid").glob("*.conf"))
# The seeds are loaded from a temporary directory: their TLS files are named absolutely.
SEEDS = [p.read_text().replace("../tls/", f"{CORPUS}/tls/") for p in VALID]

# Characters that matter to nginx's lexer, over-represented so mutations hit them.
SPECIAL = st.sampled_from(list(';{}#"\'\\$ \t\n') + ["${", "~*", "=", "^~", "@", "*:", "[::]", "unix:", "=1", "0"])
PIECES = st.one_of(SPECIAL, st.text(max_size=8))


def no_dns(name: str) -> tuple[str, ...]:
    return ("127.0.0.1",) if name == "localhost" else ()


def load_text(text: str, directives: str | None = None) -> Config | ConfigError:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "nginx.conf"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            return load(str(path), prefix=d, directives=directives, resolve=no_dns)
        except ConfigError as err:
            assert str(err).startswith("[emerg] ")
            return err


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 12)))
        text = text[:i] + draw(PIECES) + text[j:]
    return text


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text_gives_config_or_config_error(text: str) -> None:
    assert isinstance(load_text(text), Config | ConfigError)


@FUZZ
@given(mutated())
def test_mutated_valid_configs_give_config_or_config_error(text: str) -> None:
    assert isinstance(load_text(text), Config | ConfigError)


@FUZZ
@given(st.lists(PIECES, max_size=12).map("".join))
def test_arbitrary_g_directives_give_config_or_config_error(directives: str) -> None:
    assert isinstance(load_text("events {}\n", directives), Config | ConfigError)


@pytest.mark.parametrize("seed", VALID, ids=lambda p: p.name)
def test_every_valid_seed_loads(seed: Path) -> None:
    assert isinstance(load_text(SEEDS[VALID.index(seed)]), Config)
