// Command dhcheck reads a Deckhouse module source the way Deckhouse does, and
// says where our releases would not be found, downloaded or installed.
//
// It is written from Deckhouse's reading rules (module source discovery,
// release images, the step-by-step update walk, module.yaml decoding and
// image extraction; docs/RELEASES.md lists them) and shares no code with
// scripts/release.sh, so a mistake in one shows up in the other.
//
//	dhcheck module-yaml [-explicit-enable] FILE...
//	    strict-decode module.yaml files into the field types Deckhouse
//	    documents (unknown fields and wrong types are errors)
//	dhcheck source -repo HOST/PATH -module NAME -channels alpha,...,lts
//	    [-walk-from vX.Y.Z] [-explicit-enable] [-insecure]
//	    discovery tag, release:<channel> images, semver-only tags, the update
//	    walk from -walk-from to each channel's version, the bundles
//
// -explicit-enable: module.yaml must not enable the module by bundle
// (accessibility.editions.*.enabledInBundles), so that only a ModuleConfig
// enables it. Every problem is printed as "FAIL: ..." on stderr; the exit
// code is 1 when there was any, 2 on a usage error.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// report collects the findings of one run.
type report struct {
	failures int
}

func (r *report) ok(format string, args ...any) {
	fmt.Printf("ok: "+format+"\n", args...)
}

func (r *report) fail(format string, args ...any) {
	r.failures++
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  dhcheck module-yaml [-explicit-enable] FILE...
  dhcheck source -repo HOST/PATH -module NAME -channels alpha,beta,... [-walk-from vX.Y.Z] [-explicit-enable] [-insecure]`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	r := &report{}
	switch os.Args[1] {
	case "module-yaml":
		fs := flag.NewFlagSet("module-yaml", flag.ExitOnError)
		explicit := fs.Bool("explicit-enable", false, "refuse enabledInBundles")
		_ = fs.Parse(os.Args[2:])
		if fs.NArg() == 0 {
			usage()
		}
		for _, path := range fs.Args() {
			data, err := os.ReadFile(path)
			if err != nil {
				r.fail("%s: %v", path, err)
				continue
			}
			checkModuleYAML(r, path, data, "", *explicit)
		}
	case "source":
		fs := flag.NewFlagSet("source", flag.ExitOnError)
		repo := fs.String("repo", "", "ModuleSource spec.registry.repo")
		module := fs.String("module", "", "module name")
		channels := fs.String("channels", "", "comma-separated release channels")
		walkFrom := fs.String("walk-from", "", "check the update walk from this version to each channel's")
		explicit := fs.Bool("explicit-enable", false, "refuse enabledInBundles")
		insecure := fs.Bool("insecure", false, "plain HTTP (127.0.0.1 and localhost always are)")
		_ = fs.Parse(os.Args[2:])
		if *repo == "" || *module == "" || *channels == "" || fs.NArg() != 0 {
			usage()
		}
		var chans []string
		for _, c := range strings.Split(*channels, ",") {
			k, err := channelTag(c)
			if err != nil {
				r.fail("%v", err)
				continue
			}
			chans = append(chans, k)
		}
		s := newSource(strings.TrimSuffix(*repo, "/"), *module, *insecure, *explicit)
		s.check(r, chans, *walkFrom)
	default:
		usage()
	}
	if r.failures > 0 {
		fmt.Fprintf(os.Stderr, "dhcheck: %d problem(s)\n", r.failures)
		os.Exit(1)
	}
}
