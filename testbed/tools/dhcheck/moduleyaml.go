package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"

	"github.com/Masterminds/semver/v3"
	"sigs.k8s.io/yaml"
)

// moduleDefinition is module.yaml with the field names and types of
// Deckhouse's module definition (decoded through JSON struct tags, as its
// newer loader does with sigs.k8s.io/yaml). Every requirement is a string:
// a YAML boolean under requirements fails the decode there.
type moduleDefinition struct {
	Name           string               `json:"name"`
	Critical       bool                 `json:"critical,omitempty"`
	Weight         uint32               `json:"weight,omitempty"`
	Tags           []string             `json:"tags,omitempty"`
	Subsystems     []string             `json:"subsystems,omitempty"`
	Namespace      string               `json:"namespace,omitempty"`
	Stage          string               `json:"stage,omitempty"`
	ExclusiveGroup string               `json:"exclusiveGroup,omitempty"`
	Descriptions   *moduleDescriptions  `json:"descriptions,omitempty"`
	Requirements   *moduleRequirements  `json:"requirements,omitempty"`
	Accessibility  *moduleAccessibility `json:"accessibility,omitempty"`
	Disable        *moduleDisable       `json:"disable,omitempty"`
	Update         *moduleUpdate        `json:"update,omitempty"`
}

type moduleDescriptions struct {
	En string `json:"en,omitempty"`
	Ru string `json:"ru,omitempty"`
}

// moduleRequirements: version ranges as strings, and the required modules
// as a name -> range map. Bootstrapped is for Deckhouse's built-in modules.
type moduleRequirements struct {
	Deckhouse    string            `json:"deckhouse,omitempty"`
	Kubernetes   string            `json:"kubernetes,omitempty"`
	Bootstrapped string            `json:"bootstrapped,omitempty"`
	Modules      map[string]string `json:"modules,omitempty"`
}

type moduleAccessibility struct {
	Editions map[string]moduleEdition `json:"editions"`
}

type moduleEdition struct {
	Available        bool     `json:"available"`
	EnabledInBundles []string `json:"enabledInBundles"`
}

type moduleDisable struct {
	Confirmation bool               `json:"confirmation,omitempty"`
	Message      string             `json:"message,omitempty"`
	Messages     moduleDescriptions `json:"messages,omitempty"`
}

type moduleUpdate struct {
	Versions []struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"versions,omitempty"`
}

// dns1123Label is a Kubernetes DNS-1123 label; Deckhouse keeps a module name
// (a tag of the source repository) only when it is one.
var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func isModuleName(s string) bool {
	return len(s) <= 64 && dns1123Label.MatchString(s) && s != "modules"
}

// decodeModuleDefinition converts the YAML to JSON without looking at the
// target types, then decodes the JSON with unknown fields refused. A YAML
// boolean or number where Deckhouse has a string therefore fails ("cannot
// unmarshal bool into Go struct field ... of type string"), as it does for
// Deckhouse's decoders that do not coerce scalars (a YAML-to-JSON conversion
// followed by encoding/json, or gopkg.in/yaml.v3). sigs.k8s.io/yaml's
// Unmarshal would quietly turn `true` into "true": what passes here passes
// every one of them. Duplicate keys are refused too.
func decodeModuleDefinition(data []byte) (*moduleDefinition, error) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	var def moduleDefinition
	if err := dec.Decode(&def); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("more than one YAML document")
	}
	return &def, nil
}

// checkModuleYAML strict-decodes data (module.yaml from where) and checks
// what Deckhouse relies on. want, when set, is the module name it must carry.
func checkModuleYAML(r *report, where string, data []byte, want string, explicitEnable bool) *moduleDefinition {
	def, err := decodeModuleDefinition(data)
	if err != nil {
		r.fail("%s: does not decode as Deckhouse's module definition: %v", where, err)
		return nil
	}
	bad := r.failures
	if !isModuleName(def.Name) {
		r.fail("%s: name %q is not a module name (DNS-1123 label, at most 64 characters, not \"modules\")", where, def.Name)
	}
	if want != "" && def.Name != want {
		r.fail("%s: name %q, want %q", where, def.Name, want)
	}
	if def.Weight == 0 {
		// Deckhouse's loader ignores a module.yaml without a weight and
		// falls back to the directory name.
		r.fail("%s: weight is missing or 0", where)
	}
	if def.Requirements != nil {
		req := def.Requirements
		ranges := map[string]string{"deckhouse": req.Deckhouse, "kubernetes": req.Kubernetes}
		for m, c := range req.Modules {
			ranges["modules."+m] = c
		}
		keys := make([]string, 0, len(ranges))
		for k := range ranges {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if ranges[k] == "" {
				continue
			}
			if _, err := semver.NewConstraint(ranges[k]); err != nil {
				r.fail("%s: requirements.%s %q is not a version range: %v", where, k, ranges[k], err)
			}
		}
		if req.Bootstrapped != "" {
			r.fail("%s: requirements.bootstrapped is for Deckhouse's built-in modules, not one from a ModuleSource", where)
		}
	}
	if explicitEnable && def.Accessibility != nil {
		for name, ed := range def.Accessibility.Editions {
			if len(ed.EnabledInBundles) > 0 {
				r.fail("%s: accessibility.editions.%s.enabledInBundles %v: Deckhouse would enable the module without a ModuleConfig in those bundles", where, name, ed.EnabledInBundles)
			}
		}
	}
	if r.failures == bad {
		r.ok("%s: strict decode as Deckhouse's module definition (name %s, weight %d%s)", where, def.Name, def.Weight, requirementsNote(def.Requirements))
	}
	return def
}

func requirementsNote(req *moduleRequirements) string {
	if req == nil {
		return ""
	}
	s := ""
	if req.Deckhouse != "" {
		s += fmt.Sprintf(", deckhouse %q", req.Deckhouse)
	}
	if req.Kubernetes != "" {
		s += fmt.Sprintf(", kubernetes %q", req.Kubernetes)
	}
	if len(req.Modules) > 0 {
		s += fmt.Sprintf(", modules %v", req.Modules)
	}
	return s
}
