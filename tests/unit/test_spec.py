"""The spec fails at load with a message that names the key and the problem."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.commands.layout import layout_for
from deploy.spec import SpecError, choose_app, load_spec, load_specs, parse_spec, repository


def minimal(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "app": "shop",
        "image": "registry.example.com/acme/shop",
        "environments": {
            "production": {
                "public_url": "https://shop.example.com",
                "ssh": {"key": "keys/id", "known_hosts": "keys/known_hosts"},
                "hosts": [{"name": "web1", "address": "10.0.0.5"}],
            }
        },
    }
    doc.update(extra)
    return doc


def error_of(doc: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as err:
        parse_spec(doc)
    return str(err.value)


def test_minimal_spec_gets_sensible_defaults() -> None:
    spec = parse_spec(minimal())
    env = spec.environment(None)
    assert env.name == "production"
    assert env.hosts[0].port == 22
    assert env.ports.blue != env.ports.green
    assert repository(spec.main_image) == "acme/shop"
    assert env.keep_previous == 3600  # the usual "we spotted a bug after release" window


def test_a_release_of_several_images_names_each() -> None:
    images = {"web": "reg.example.com/acme/shop", "frontend": "reg.example.com/acme/shop-ui"}
    spec = parse_spec(minimal(image=None, images=images))
    assert spec.main_image == "reg.example.com/acme/shop"
    both = error_of(minimal(images=images))
    assert "name the app's image with `image:`, or several with `images:` (not both)" in both
    assert "not both" in error_of(minimal(image=None))
    bad_name = error_of(minimal(image=None, images={"Web-UI": "reg.example.com/a/b"}))
    assert bad_name.startswith("images.Web-UI.[key]: String should match pattern")


def test_environment_overrides_a_top_level_section() -> None:
    doc = minimal(stability={"duration": 300, "interval": 10})
    doc["environments"]["staging"] = {
        **doc["environments"]["production"],
        "hosts": [{"name": "web2", "address": "10.0.0.6"}],
        "stability": {"duration": 30, "interval": 1},
    }
    spec = parse_spec(doc)
    assert spec.environment("production").stability.duration == 300
    assert spec.environment("staging").stability.duration == 30


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.pop("app"), "app: Field required"),
        (lambda d: d.update(app="Shop App"), "app: String should match"),
        (lambda d: d.update(colour="blue"), "colour: unknown key"),
        (
            lambda d: d["environments"]["production"]["hosts"][0].update(port=70000),
            "environments.production.hosts.0.port: Input should be less than or equal to 65535",
        ),
        (
            lambda d: d["environments"]["production"]["hosts"].append(
                {"name": "web1", "address": "10.0.0.6"}
            ),
            "host names must be unique, repeated: web1",
        ),
        (lambda d: d.update(ports={"blue": 8000, "green": 8000}), "different ports"),
        (
            lambda d: d.update(smoke=[{"path": "health"}]),
            "smoke.0.path: must be an absolute URL path",
        ),
        (
            lambda d: d.update(smoke=[{"path": "/", "headers": {"Bad Header": "x"}}]),
            "invalid header name",
        ),
        (
            lambda d: d.update(proxy={"upstream_template": "server {host}:{port};"}),
            "proxy.upstream_template: may use only",
        ),
        (lambda d: d.update(stability={"max_error_rate": 2}), "max_error_rate"),
        (lambda d: d.update(environments={}), "environments: at least one"),
        (lambda d: d.update(default_environment="prod"), "default_environment 'prod' is not"),
        (
            lambda d: d["environments"]["production"].pop("ssh"),
            "environments.production.ssh: Field required",
        ),
        (
            lambda d: d["environments"]["production"]["hosts"][0].update(address="a b"),
            "hosts.0.address",
        ),
        (lambda d: d.update(hooks={"migrate": {"command": []}}), "hooks.migrate.command"),
    ],
)
def test_invalid_specs_name_the_key(mutate: Any, expected: str) -> None:
    doc = minimal()
    mutate(doc)
    assert expected in error_of(doc)


def local_host(doc: dict[str, Any]) -> dict[str, Any]:
    doc["environments"]["production"]["hosts"].append({"name": "ctl", "address": "local"})
    return doc


def test_a_local_host_is_refused_without_the_environments_opt_in() -> None:
    assert error_of(local_host(minimal())) == (
        "environments.production.hosts.1.address: 'local' runs commands on this machine "
        "without SSH or a host-key check; set environments.production.allow_local: true "
        "to allow it"
    )


def test_a_local_host_is_accepted_when_its_environment_opts_in() -> None:
    doc = local_host(minimal())
    doc["environments"]["production"]["allow_local"] = True
    env = parse_spec(doc).environment("production")
    assert env.allow_local and env.hosts[1].address == "local"


def test_the_local_opt_in_belongs_to_an_environment_not_the_top_level() -> None:
    assert error_of(local_host(minimal(allow_local=True))) == "allow_local: unknown key"


def test_unknown_environment_lists_the_known_ones() -> None:
    spec = parse_spec(minimal())
    with pytest.raises(SpecError, match=r"unknown environment 'prod' \(known: production\)"):
        spec.environment("prod")


def test_ssh_paths_are_relative_to_the_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "greenlight.yml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(minimal()))
    env = load_spec(path).environment("production")
    assert env.ssh.key == tmp_path / "conf" / "keys" / "id"


def test_a_spec_file_changed_between_reads_is_read_as_it_is_now(tmp_path: Path) -> None:
    """Parses are kept by the file's content (a phase job reads its spec each time): an
    edit, even one that keeps the file's size, is never answered with the old parse."""
    path = tmp_path / "greenlight.yml"
    path.write_text(yaml.safe_dump(minimal(image="registry.example.com/acme/shop")))
    first = load_spec(path)
    assert load_spec(path) is first  # unchanged: the same parse
    path.write_text(yaml.safe_dump(minimal(image="registry.example.com/acme/shoq")))
    assert load_spec(path).image == "registry.example.com/acme/shoq"
    path.write_text("app: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(path)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "missing.yml")
    broken = tmp_path / "broken.yml"
    broken.write_text("app: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(broken)


def test_config_comes_from_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "other.yml"
    path.write_text(yaml.safe_dump(minimal(app="other")))
    monkeypatch.setenv("GREENLIGHT_CONFIG", str(path))
    assert load_spec().app == "other"


def write_app(folder: Path, name: str, **settings: Any) -> None:
    doc = minimal(app=name, **settings)
    (folder / f"{name}.yml").write_text(yaml.safe_dump(doc))


# Everything of its own a second app needs beside `shop` on the same host.
LEDGER_APART = {
    "app_dir": "ledger",
    "ports": {"blue": 8011, "green": 8012},
    "proxy": {"upstream_file": "nginx/ledger.conf"},
}


def test_a_directory_holds_one_spec_per_app(tmp_path: Path) -> None:
    write_app(tmp_path, "shop")
    write_app(tmp_path, "ledger", **LEDGER_APART)
    (tmp_path / "notes.txt").write_text("not a spec")
    specs = load_specs(tmp_path)
    assert sorted(specs) == ["ledger", "shop"]
    assert choose_app(specs, "ledger").environment(None).app_dir == "ledger"
    with pytest.raises(SpecError, match=r"choose an app with --app \(ledger, shop\)"):
        choose_app(specs, None)
    with pytest.raises(SpecError, match=r"unknown app 'shoop' \(known: ledger, shop\)"):
        choose_app(specs, "shoop")


@pytest.mark.parametrize(
    ("settings", "clash"),
    [
        ({"ports": {"blue": 8011, "green": 8012}, "proxy": {"upstream_file": "u2"}}, "app_dir"),
        ({"app_dir": "b", "ports": {"blue": 8011, "green": 8012}}, "upstream_file"),
        ({"app_dir": "b", "proxy": {"upstream_file": "u2"}}, "port 8001"),
    ],
)
def test_apps_that_would_collide_on_a_host_are_refused(
    tmp_path: Path, settings: dict[str, Any], clash: str
) -> None:
    write_app(tmp_path, "shop")
    write_app(tmp_path, "ledger", **settings)
    with pytest.raises(
        SpecError, match=rf"ledger/production and shop/production on 10.0.0.5 .*{clash}"
    ):
        load_specs(tmp_path)


def test_the_same_app_twice_is_refused_naming_both_files(tmp_path: Path) -> None:
    write_app(tmp_path, "shop")
    (tmp_path / "shop-copy.yml").write_text((tmp_path / "shop.yml").read_text())
    with pytest.raises(
        SpecError, match=r"shop.yml: app 'shop' is already defined in shop-copy.yml"
    ):
        load_specs(tmp_path)


STAGING_APART = {
    "app_dir": "app-staging",
    "ports": {"blue": 8021, "green": 8022},
    "proxy": {"upstream_file": "nginx/staging-upstream.conf"},
    "project": "shop-staging",
}


def with_staging(**staging: Any) -> dict[str, Any]:
    """Production and a staging environment on the same host."""
    doc = minimal()
    doc["environments"]["staging"] = {
        **doc["environments"]["production"],
        "public_url": "https://staging.shop.example.com",
        **staging,
    }
    return doc


def test_two_environments_of_one_app_share_a_host_with_their_own_project() -> None:
    spec = parse_spec(with_staging(**STAGING_APART))
    production = layout_for(spec, spec.environment("production"))
    staging = layout_for(spec, spec.environment("staging"))
    assert (production.project("blue"), production.project("green")) == ("shop-blue", "shop-green")
    assert staging.project("blue") == "shop-staging-blue"
    assert staging.app_dir == "app-staging"


@pytest.mark.parametrize(
    ("same", "clash"),
    [
        ("app_dir", "app_dir 'app'"),
        ("proxy", "upstream_file 'nginx/upstream.conf'"),
        ("ports", "port 8001"),
        ("project", r"compose project prefix 'shop' \(set `project:` in one\)"),
    ],
)
def test_two_environments_of_one_app_that_would_collide_on_a_host_are_refused(
    same: str, clash: str
) -> None:
    staging = {k: v for k, v in STAGING_APART.items() if k != same}
    with pytest.raises(
        SpecError, match=rf"^shop/production and shop/staging on 10.0.0.5 both use {clash}$"
    ):
        parse_spec(with_staging(**staging))


def test_a_collision_names_everything_both_environments_would_share() -> None:
    message = error_of(with_staging())
    assert message == (
        "shop/production and shop/staging on 10.0.0.5 both use app_dir 'app', "
        "upstream_file 'nginx/upstream.conf', port 8001, "
        "compose project prefix 'shop' (set `project:` in one)"
    )


def test_a_project_prefix_is_a_name() -> None:
    message = error_of(with_staging(**{**STAGING_APART, "project": "Shop Staging"}))
    assert message.startswith("environments.staging.project: String should match pattern")


def test_apps_whose_project_prefixes_collide_on_a_host_are_refused(tmp_path: Path) -> None:
    write_app(tmp_path, "shop")
    write_app(tmp_path, "ledger", **LEDGER_APART, project="shop")
    with pytest.raises(
        SpecError,
        match=r"^ledger/production and shop/production on 10.0.0.5 both use "
        r"compose project prefix 'shop'",
    ):
        load_specs(tmp_path)


def test_one_environment_naming_a_host_twice_is_refused() -> None:
    doc = minimal()
    doc["environments"]["production"]["hosts"].append({"name": "web2", "address": "10.0.0.5"})
    assert error_of(doc) == "shop/production lists 10.0.0.5:22 twice"


# -- GitHub: which repository's releases and CI runs deploy where -----------------------


def test_a_repository_maps_releases_and_ci_builds_to_environments() -> None:
    spec = parse_spec(
        minimal(
            github={
                "repository": "acme/shop",
                "release": {"environment": "production"},
                "ci": {"workflow": "build.yml", "environment": "production"},
            }
        )
    )
    assert spec.github is not None and spec.github.release is not None
    assert spec.github.release.prereleases == "ignore"
    assert spec.github.ci is not None
    assert (spec.github.ci.branch, spec.github.ci.tag) == ("main", "sha-{sha7}")


@pytest.mark.parametrize(
    ("github", "expected"),
    [
        ({"repository": "acme"}, "github.repository: String should match pattern"),
        ({"repository": "acme/shop;id"}, "github.repository: String should match pattern"),
        (
            {"repository": "acme/shop", "release": {"environment": "prod"}},
            "github.release.environment: 'prod' is not one of the environments (production)",
        ),
        (
            {"repository": "a/b", "release": {"environment": "production", "prereleases": "qa"}},
            "github.release.prereleases: 'qa' is not one of the environments",
        ),
        (
            {
                "repository": "a/b",
                "ci": {"workflow": "b.yml", "environment": "production", "tag": "latest"},
            },
            "must contain {sha} or {sha7}",
        ),
        (
            {
                "repository": "a/b",
                "ci": {"workflow": "b", "environment": "production", "tag": "{ref}"},
            },
            "only the {sha} and {sha7} placeholders",
        ),
        (
            {
                "repository": "a/b",
                "ci": {"workflow": "b", "environment": "production", "tag": "x/{sha}"},
            },
            "which is not a docker tag",
        ),
    ],
)
def test_a_github_section_that_cannot_work_names_the_key(
    github: dict[str, Any], expected: str
) -> None:
    assert expected in error_of(minimal(github=github))


def test_two_apps_naming_one_repository_are_refused(tmp_path: Path) -> None:
    write_app(tmp_path, "shop", github={"repository": "acme/Shop"})
    write_app(tmp_path, "ledger", **LEDGER_APART, github={"repository": "ACME/shop"})
    with pytest.raises(SpecError) as err:
        load_specs(tmp_path)
    assert "named by both ledger and shop" in str(err.value)
