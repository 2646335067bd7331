#!/usr/bin/env python3
"""YAML/JSON chores of scripts/images.sh and scripts/release.sh.

  image-spec DIR            the Docker-less recipe of images/DIR, read from its
                            werf.inc.yaml (the werf build stays the one
                            description of what an image holds): JSON
                            {"name": <camelCase DIR>, "dir": DIR,
                             "imports": [{"add": <artifact path>, "to": <path>}],
                             "config": {"user", "entrypoint", "workingDir",
                                        "expose"}}
  image-dirs                the image directories (images/*/werf.inc.yaml),
                            one a line, sorted
  changelog VERSION         changelog.yaml of VERSION from release.yaml
                            (fails when release.yaml has no entry for it)
  release-version           the `version` of release.yaml
  channels                  the channels of release.yaml as the tags Deckhouse
                            reads (alpha … lts), one a line, in release.yaml's
                            order; fails unless each is one of Deckhouse's six
                            (ModuleUpdatePolicy spelling or tag) and the order
                            is Deckhouse's
  camel NAME                camelCase of an image directory name

Run from the repository root.
"""
import json
import os
import re
import sys

import yaml

ARTIFACT_SUFFIX = "/rust-artifact"


def camel(name):
    parts = re.split(r"[-_]", name)
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def render_werf(text, module, image):
    """A minimal stand-in for werf's template rendering: drop template
    comments and variable definitions, fill in the two values werf passes
    (.ModuleName, .ImageName), and replace every other action with a marker
    (base images, versions), which only appear in fields not read here."""
    text = re.sub(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", "", text, flags=re.S)
    text = re.sub(r"^\s*\{\{-?\s*\$\w+\s*:=.*?\}\}\s*$", "", text, flags=re.M)
    text = re.sub(r"\{\{-?\s*\$\.ModuleName\s*-?\}\}", module, text)
    text = re.sub(r"\{\{-?\s*\$\.ImageName\s*-?\}\}", image, text)
    return re.sub(r"\{\{.*?\}\}", "TEMPLATED", text)


def image_spec(directory, module="pod-reloader"):
    path = os.path.join("images", directory, "werf.inc.yaml")
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(render_werf(f.read(), module, directory)) if d]
    want = f"{module}/{directory}"
    found = [d for d in docs if d.get("image") == want]
    if len(found) != 1:
        sys.exit(f"{path}: expected one image {want}, found {len(found)}")
    doc = found[0]
    imports = []
    for imp in doc.get("import") or []:
        if not str(imp.get("image", "")).endswith(ARTIFACT_SUFFIX):
            sys.exit(f"{path}: import from {imp.get('image')}: only the rust artifact is supported")
        imports.append({"add": imp["add"], "to": imp["to"]})
    if not imports:
        sys.exit(f"{path}: image {want} imports nothing")
    cfg = (doc.get("imageSpec") or {}).get("config") or {}
    user = str(cfg.get("user", ""))
    if not re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", user):
        sys.exit(f"{path}: imageSpec.config.user must be a numeric non-root uid[:gid], got {user!r}")
    entrypoint = cfg.get("entrypoint") or []
    if not entrypoint:
        sys.exit(f"{path}: imageSpec.config.entrypoint is empty")
    return {
        "name": camel(directory),
        "dir": directory,
        "imports": imports,
        "config": {
            "user": user,
            "entrypoint": entrypoint,
            "workingDir": cfg.get("workingDir", "/"),
            "expose": cfg.get("expose") or [],
        },
    }


def release_yaml():
    with open("release.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


# Deckhouse's release channels from the least to the most stable:
# ModuleUpdatePolicy's spelling -> the tag of the release repository.
DECKHOUSE_CHANNELS = {
    "Alpha": "alpha",
    "Beta": "beta",
    "EarlyAccess": "early-access",
    "Stable": "stable",
    "RockSolid": "rock-solid",
    "Lts": "lts",
}


def channels():
    listed = release_yaml().get("channels") or []
    order = list(DECKHOUSE_CHANNELS.values())
    tags = []
    for c in listed:
        tag = DECKHOUSE_CHANNELS.get(c, c if c in order else None)
        if tag is None:
            sys.exit(f"release.yaml: channel {c!r} is none of {', '.join(DECKHOUSE_CHANNELS)}")
        tags.append(tag)
    if not tags:
        sys.exit("release.yaml lists no channels")
    if tags != sorted(tags, key=order.index) or len(set(tags)) != len(tags):
        sys.exit(f"release.yaml: channels {listed} are not in Deckhouse's order {', '.join(DECKHOUSE_CHANNELS)}")
    return tags


def changelog(version):
    entries = release_yaml().get("changelog") or {}
    if version not in entries:
        sys.exit(f"release.yaml has no changelog entry for {version} (have: {', '.join(entries) or 'none'})")
    entry = entries[version] or {}
    return yaml.safe_dump(entry, sort_keys=True, allow_unicode=True, width=100)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "image-spec" and len(args) == 1:
        print(json.dumps(image_spec(args[0]), sort_keys=True))
    elif cmd == "image-dirs" and not args:
        for d in sorted(os.listdir("images")):
            if os.path.isfile(os.path.join("images", d, "werf.inc.yaml")):
                print(d)
    elif cmd == "changelog" and len(args) == 1:
        sys.stdout.write(changelog(args[0]))
    elif cmd == "channels" and not args:
        for tag in channels():
            print(tag)
    elif cmd == "release-version" and not args:
        print(release_yaml().get("version", ""))
    elif cmd == "camel" and len(args) == 1:
        print(camel(args[0]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
