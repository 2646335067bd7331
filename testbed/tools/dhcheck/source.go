package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"sigs.k8s.io/yaml"
)

// Deckhouse's channels, as tags of the release repository (kebab case of
// ModuleUpdatePolicy's releaseChannel), from the least to the most stable.
var channelTags = []string{"alpha", "beta", "early-access", "stable", "rock-solid", "lts"}

// releaseTag is what Deckhouse's update walk keeps of the module
// repository's tags; nothing else can be stepped through.
var releaseTag = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)

// versionLike: tags meant as versions (as opposed to image tags such as
// podReloader-<digest prefix>), which must then be plain releases.
var versionLike = regexp.MustCompile(`^v\d`)

var camelBoundary = regexp.MustCompile(`([a-z])([A-Z])`)

// channelTag: "EarlyAccess", "early-access" -> "early-access".
func channelTag(c string) (string, error) {
	k := strings.ToLower(camelBoundary.ReplaceAllString(strings.TrimSpace(c), "$1-$2"))
	for _, t := range channelTags {
		if k == t {
			return k, nil
		}
	}
	return "", fmt.Errorf("channel %q is none of %s", c, strings.Join(channelTags, ", "))
}

// source is a ModuleSource repository and the module read from it.
type source struct {
	repo, module   string
	nameOpts       []name.Option
	explicitEnable bool
	ctx            context.Context
	// cache of release versions already checked (by version)
	releases map[string]bool
	bundles  map[string]bool
}

func newSource(repo, module string, insecure, explicitEnable bool) *source {
	host := strings.SplitN(repo, "/", 2)[0]
	h := strings.Split(host, ":")[0]
	var opts []name.Option
	if insecure || h == "127.0.0.1" || h == "localhost" {
		opts = append(opts, name.Insecure)
	}
	return &source{repo: repo, module: module, nameOpts: opts, explicitEnable: explicitEnable,
		releases: map[string]bool{}, bundles: map[string]bool{}}
}

// Deckhouse gives a registry call 120 s.
func (s *source) call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 120*time.Second)
}

func (s *source) tags(repo string) ([]string, error) {
	r, err := name.NewRepository(repo, s.nameOpts...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.call()
	defer cancel()
	// remote.List is GET /v2/<repo>/tags/list (paginated), never _catalog.
	return remote.List(r, remote.WithContext(ctx))
}

// image fetches ref lazily: its layers are read through ctx later, so the
// caller cancels ctx (done) once it has read them.
func (s *source) image(ref string) (img v1.Image, digest v1.Hash, done func(), err error) {
	done = func() {}
	r, err := name.ParseReference(ref, s.nameOpts...)
	if err != nil {
		return nil, v1.Hash{}, done, err
	}
	ctx, cancel := s.call()
	img, err = remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, v1.Hash{}, done, err
	}
	digest, err = img.Digest()
	return img, digest, cancel, err
}

func (s *source) check(r *report, channels []string, walkFrom string) {
	// 1. Discovery: the tags of the source repository are module names.
	tags, err := s.tags(s.repo)
	if err != nil {
		r.fail("discovery: tags of %s: %v (Deckhouse finds no module there)", s.repo, err)
		return
	}
	var modules []string
	for _, t := range tags {
		if isModuleName(t) {
			modules = append(modules, t)
		}
	}
	if !contains(modules, s.module) {
		r.fail("discovery: %s has no tag %s (module names found: %v; tags: %v)", s.repo, s.module, modules, tags)
	} else {
		r.ok("discovery: tags/list of %s names the module %s (modules: %s)", s.repo, s.module, strings.Join(modules, " "))
	}

	moduleRepo := s.repo + "/" + s.module
	releaseRepo := moduleRepo + "/release"

	// 2. Tags of the module repository: what the update walk lists.
	moduleTags, err := s.tags(moduleRepo)
	if err != nil {
		r.fail("tags of %s: %v", moduleRepo, err)
		return
	}
	releaseTags, err := s.tags(releaseRepo)
	if err != nil {
		r.fail("tags of %s: %v", releaseRepo, err)
		return
	}
	walkable := semverTags(r, moduleRepo, moduleTags)
	semverTags(r, releaseRepo, releaseTags)
	r.ok("%s: versions the update walk sees: %s", moduleRepo, joinVersions(walkable))

	// 3. Each channel.
	channelVersion := map[string]*semver.Version{}
	for _, c := range channels {
		v := s.checkRelease(r, releaseRepo, c, "channel "+c)
		if v == nil {
			continue
		}
		channelVersion[c] = v
		if !containsVersion(walkable, v) {
			r.fail("channel %s serves %s, which is not among the module repository's tags the update walk keeps (^v\\d+\\.\\d+\\.\\d+$)", c, v.Original())
		}
		s.checkBundle(r, moduleRepo, v.Original())
	}

	// 4. The walk from walkFrom to each channel's version.
	if walkFrom == "" {
		return
	}
	from, err := semver.NewVersion(walkFrom)
	if err != nil || !releaseTag.MatchString(walkFrom) {
		r.fail("-walk-from %q is not vX.Y.Z", walkFrom)
		return
	}
	if !containsVersion(walkable, from) {
		r.fail("walk: %s is not a tag of %s", walkFrom, moduleRepo)
	}
	for _, c := range channels {
		to := channelVersion[c]
		if to == nil || !releaseTag.MatchString(to.Original()) {
			continue // reported above: the walk cannot reach it
		}
		s.checkWalk(r, releaseRepo, moduleRepo, c, from, to, walkable)
	}
}

// checkWalk: Deckhouse steps from the deployed version through every
// release tag up to the channel's, one minor version at a time. Each step
// must be a readable release with its bundle, and no minor version may be
// missing on the way.
func (s *source) checkWalk(r *report, releaseRepo, moduleRepo, channel string, from, to *semver.Version, walkable []*semver.Version) {
	if to.LessThan(from) {
		r.fail("walk %s: channel version %s is older than %s: Deckhouse does not downgrade", channel, to.Original(), from.Original())
		return
	}
	bad := r.failures
	path := []string{"v" + from.String()}
	prev := from
	for _, v := range walkable {
		if !v.GreaterThan(from) || v.GreaterThan(to) {
			continue
		}
		if v.Major() == prev.Major() && v.Minor() > prev.Minor()+1 {
			r.fail("walk %s: no release of v%d.%d between %s and %s", channel, prev.Major(), prev.Minor()+1, prev.Original(), v.Original())
		}
		if got := s.checkRelease(r, releaseRepo, v.Original(), "walk step "+v.Original()); got != nil && !got.Equal(v) {
			r.fail("walk %s: release:%s holds version %s", channel, v.Original(), got.Original())
		}
		s.checkBundle(r, moduleRepo, v.Original())
		path = append(path, v.Original())
		prev = v
	}
	if !prev.Equal(to) {
		r.fail("walk %s: ends at %s, the channel serves %s", channel, prev.Original(), to.Original())
	}
	if r.failures == bad {
		r.ok("walk %s: %s", channel, strings.Join(path, " -> "))
	}
}

// semverTags: the tags Deckhouse's walk keeps, sorted; version-like tags it
// would drop are reported.
func semverTags(r *report, repo string, tags []string) []*semver.Version {
	var out []*semver.Version
	for _, t := range tags {
		if releaseTag.MatchString(t) {
			v, err := semver.NewVersion(t)
			if err == nil {
				out = append(out, v)
				continue
			}
		}
		if versionLike.MatchString(t) {
			r.fail("%s: tag %s is not ^v\\d+\\.\\d+\\.\\d+$: Deckhouse's update walk skips it", repo, t)
		}
	}
	sort.Sort(semver.Collection(out))
	return out
}

// checkRelease reads release image releaseRepo:tag like Deckhouse: the
// version.json, changelog.yaml and module.yaml at its root.
func (s *source) checkRelease(r *report, releaseRepo, tag, what string) *semver.Version {
	ref := releaseRepo + ":" + tag
	img, digest, done, err := s.image(ref)
	defer done()
	if err != nil {
		r.fail("%s: %s: %v", what, ref, err)
		return nil
	}
	files, err := extractImage(r, ref, img, "version.json", "changelog.yaml", "changelog.yml", "module.yaml")
	if err != nil {
		r.fail("%v", err)
		return nil
	}
	bad := r.failures
	raw, ok := files.root["version.json"]
	if !ok {
		r.fail("%s: no version.json at the root", ref)
		return nil
	}
	var vj struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(raw, &vj); err != nil {
		r.fail("%s: version.json: %v", ref, err)
		return nil
	}
	v, err := semver.NewVersion(vj.Version)
	if err != nil {
		r.fail("%s: version.json version %q is not semver: %v", ref, vj.Version, err)
		return nil
	}
	if !releaseTag.MatchString(vj.Version) {
		r.fail("%s: version %s is not ^v\\d+\\.\\d+\\.\\d+$: Deckhouse's update walk cannot step to it", ref, vj.Version)
	}
	if releaseTag.MatchString(tag) && tag != vj.Version {
		r.fail("%s: version.json says %s", ref, vj.Version)
	}
	cl, ok := files.root["changelog.yaml"]
	if !ok {
		cl, ok = files.root["changelog.yml"]
	}
	if !ok {
		r.fail("%s: no changelog.yaml at the root", ref)
	} else {
		var m map[string]any
		if err := yaml.Unmarshal(cl, &m); err != nil {
			// Deckhouse silently shows an empty changelog then.
			r.fail("%s: changelog.yaml is not a YAML mapping: %v", ref, err)
		} else if len(m) == 0 {
			r.fail("%s: changelog.yaml is empty", ref)
		}
	}
	if my, ok := files.root["module.yaml"]; !ok {
		r.fail("%s: no module.yaml at the root (Deckhouse reads requirements and accessibility from it)", ref)
	} else {
		checkModuleYAML(r, ref+" module.yaml", my, s.module, s.explicitEnable)
	}
	// The walk reads release:<version>: it must be this very image.
	if !releaseTag.MatchString(tag) {
		_, vd, vdone, err := s.image(releaseRepo + ":" + vj.Version)
		vdone()
		if err != nil {
			r.fail("%s: release:%s (what the walk reads) is missing: %v", ref, vj.Version, err)
		} else if vd != digest {
			r.fail("%s is %s but release:%s is %s", ref, digest, vj.Version, vd)
		}
	}
	if r.failures == bad && !s.releases[ref] {
		r.ok("%s: %s (%s): version.json, changelog.yaml, module.yaml at the root", what, vj.Version, digest.String()[:19])
	}
	s.releases[ref] = true
	return v
}

// checkBundle extracts moduleRepo:version under Deckhouse's rules and checks
// what Deckhouse then loads: module.yaml, version.json, openapi, the hooks
// (executable after the mask) and images_digests.json with every image
// present in the module repository.
func (s *source) checkBundle(r *report, moduleRepo, version string) {
	ref := moduleRepo + ":" + version
	if s.bundles[ref] {
		return
	}
	s.bundles[ref] = true
	img, digest, done, err := s.image(ref)
	defer done()
	if err != nil {
		r.fail("bundle %s: %v", ref, err)
		return
	}
	files, err := extractImage(r, "bundle "+ref, img, "module.yaml", "version.json", "images_digests.json")
	if err != nil {
		r.fail("%v", err)
		return
	}
	bad := r.failures
	if my, ok := files.root["module.yaml"]; !ok {
		r.fail("bundle %s: no module.yaml", ref)
	} else {
		checkModuleYAML(r, "bundle "+ref+" module.yaml", my, s.module, s.explicitEnable)
	}
	var vj struct {
		Version string `json:"version"`
	}
	if raw, ok := files.root["version.json"]; !ok {
		r.fail("bundle %s: no version.json", ref)
	} else if err := json.Unmarshal(raw, &vj); err != nil || vj.Version != version {
		r.fail("bundle %s: version.json %q (%v), want version %s", ref, bytes.TrimSpace(raw), err, version)
	}
	for _, f := range []string{"openapi/config-values.yaml", "openapi/values.yaml", "Chart.yaml"} {
		if e, ok := files.entries[f]; !ok || e.typeflag != '0' {
			r.fail("bundle %s: no file %s", ref, f)
		}
	}
	hooks := 0
	for p, e := range files.entries {
		if strings.HasPrefix(p, "hooks/") && e.typeflag == '0' {
			hooks++
			if e.mode&0o100 == 0 {
				r.fail("bundle %s: hook %s is not executable after the 0700 mask (mode %04o)", ref, p, e.mode)
			}
		}
	}
	raw, ok := files.root["images_digests.json"]
	if !ok {
		r.fail("bundle %s: no images_digests.json", ref)
		return
	}
	var digests map[string]string
	if err := json.Unmarshal(raw, &digests); err != nil {
		r.fail("bundle %s: images_digests.json is not a flat name -> digest map: %v", ref, err)
		return
	}
	names := make([]string, 0, len(digests))
	for n := range digests {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d := digests[n]
		if _, err := v1.NewHash(d); err != nil {
			r.fail("bundle %s: images_digests.json %s = %q: %v", ref, n, d, err)
			continue
		}
		dref, err := name.NewDigest(moduleRepo+"@"+d, s.nameOpts...)
		if err != nil {
			r.fail("bundle %s: %s: %v", ref, n, err)
			continue
		}
		ctx, cancel := s.call()
		_, err = remote.Head(dref, remote.WithContext(ctx))
		cancel()
		if err != nil {
			r.fail("bundle %s: image %s (%s) is not in %s: %v", ref, n, d, moduleRepo, err)
		}
	}
	if r.failures == bad {
		r.ok("bundle %s (%s): %d entries extract under Deckhouse's rules; module.yaml, version.json, %d hook(s) executable, images %s present", ref, digest.String()[:19], len(files.entries), hooks, strings.Join(names, ", "))
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsVersion(list []*semver.Version, v *semver.Version) bool {
	for _, x := range list {
		if x.Equal(v) {
			return true
		}
	}
	return false
}

func joinVersions(vs []*semver.Version) string {
	if len(vs) == 0 {
		return "none"
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = v.Original()
	}
	return strings.Join(s, " ")
}
