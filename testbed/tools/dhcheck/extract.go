package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Bounds of one extraction: a module image is a few MiB; anything far larger
// is a mistake, and a check must not be made to read without end.
const (
	maxImageBytes   = 1 << 30
	maxEntries      = 100000
	maxMetadataSize = 4 << 20
)

// entry is one extracted archive member as Deckhouse would write it.
type entry struct {
	typeflag byte
	mode     int64 // after Deckhouse's mask (0700)
	size     int64
	link     string
}

// extracted is the file tree of an image after Deckhouse's extraction.
type extracted struct {
	entries map[string]entry
	// root holds the content of the wanted files at the archive root, by
	// lower-cased name (Deckhouse matches those names case-insensitively).
	root map[string][]byte
}

// Whiteout markers of the OCI layer format.
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// extractImage flattens img's layers (an upper layer's entry hides a lower
// one's; whiteouts and opaque directories are honoured) and walks the result
// under Deckhouse's extraction rules: an entry name containing ".." aborts
// the extraction; only directories, regular files, symlinks and hard links
// are written; modes are masked with 0700. Content is kept for the root
// files named in want (lower case). Rule violations are reported on r as
// found in what.
//
// The layers are read here rather than through go-containerregistry's
// mutate.Extract: that one cleans names and drops escaping links before a
// reader could see them, and a read error after its last entry reaches the
// reader as a clean end of archive.
func extractImage(r *report, what string, img v1.Image, want ...string) (*extracted, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("%s: layers: %w", what, err)
	}
	out := &extracted{entries: map[string]entry{}, root: map[string][]byte{}}
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w] = true
	}
	seen := map[string]bool{}     // names an upper layer decided
	whiteout := map[string]bool{} // names deleted by an upper layer
	opaque := map[string]bool{}   // directories emptied by an upper layer
	var total int64
	entries := 0
	for i := len(layers) - 1; i >= 0; i-- {
		layerOpaque, err := extractLayer(r, what, layers[i], i, out, wanted, seen, whiteout, opaque, &total, &entries)
		if err != nil {
			return nil, err
		}
		for d := range layerOpaque {
			opaque[d] = true
		}
	}
	return out, nil
}

// hiddenBy: name or one of its parents is in set.
func hiddenBy(set map[string]bool, name string) bool {
	for p := name; p != "." && p != "/" && p != ""; p = path.Dir(p) {
		if set[p] {
			return true
		}
	}
	return false
}

func extractLayer(r *report, what string, layer v1.Layer, index int, out *extracted, wanted, seen, whiteout, opaque map[string]bool, total *int64, entries *int) (map[string]bool, error) {
	rc, err := layer.Uncompressed()
	if err != nil {
		return nil, fmt.Errorf("%s: layer %d: %w", what, index, err)
	}
	defer rc.Close()
	tr := tar.NewReader(io.LimitReader(rc, maxImageBytes+1))
	layerOpaque := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			return nil, fmt.Errorf("%s: layer %d: %w", what, index, err)
		}
		if *entries++; *entries > maxEntries {
			return nil, fmt.Errorf("%s: more than %d entries", what, maxEntries)
		}
		if strings.Contains(hdr.Name, "..") {
			r.fail("%s: entry %q contains \"..\": Deckhouse aborts the extraction", what, hdr.Name)
			return nil, fmt.Errorf("%s: extraction aborted", what)
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		if name == "" {
			continue
		}
		base, dir := path.Base(name), path.Dir(name)
		if base == opaqueMarker {
			layerOpaque[dir] = true
			continue
		}
		if strings.HasPrefix(base, whiteoutPrefix) {
			whiteout[path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix))] = true
			continue
		}
		if seen[name] || hiddenBy(whiteout, name) || hiddenBy(opaque, dir) {
			continue
		}
		seen[name] = true
		switch hdr.Typeflag {
		case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
		default:
			r.fail("%s: entry %q has tar type %q: Deckhouse extracts only directories, regular files, symlinks and hard links", what, hdr.Name, string(hdr.Typeflag))
			continue
		}
		if (hdr.Typeflag == tar.TypeSymlink || hdr.Typeflag == tar.TypeLink) &&
			(strings.Contains(hdr.Linkname, "..") || path.IsAbs(hdr.Linkname)) {
			r.fail("%s: %q links to %q, outside the module directory", what, hdr.Name, hdr.Linkname)
		}
		e := entry{typeflag: hdr.Typeflag, mode: hdr.Mode & 0o700, size: hdr.Size, link: hdr.Linkname}
		switch {
		case hdr.Typeflag == tar.TypeDir && e.mode != 0o700:
			r.fail("%s: directory %q has mode %04o after Deckhouse's 0700 mask: the module cannot read it", what, name, e.mode)
		case hdr.Typeflag == tar.TypeReg && e.mode&0o400 == 0:
			r.fail("%s: file %q has mode %04o after Deckhouse's 0700 mask: not readable", what, name, e.mode)
		}
		out.entries[name] = e
		if *total += hdr.Size; *total > maxImageBytes {
			return nil, fmt.Errorf("%s: more than %d bytes of files", what, maxImageBytes)
		}
		lower := strings.ToLower(name)
		if hdr.Typeflag == tar.TypeReg && !strings.Contains(lower, "/") && wanted[lower] {
			if hdr.Size > maxMetadataSize {
				r.fail("%s: %s is %d bytes", what, name, hdr.Size)
				continue
			}
			data, err := io.ReadAll(io.LimitReader(tr, maxMetadataSize))
			if err != nil {
				return nil, fmt.Errorf("%s: reading %s: %w", what, name, err)
			}
			if _, dup := out.root[lower]; dup {
				r.fail("%s: two root entries named %s (case-insensitively)", what, lower)
			}
			out.root[lower] = data
		}
	}
	return layerOpaque, nil
}
