package lambdatest

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Template is the part of a SAM template the tests read: parameters, the function globals and
// the resources, with CloudFormation's short-form intrinsics (!Ref, !GetAtt, !Sub, …) turned
// into their long forms ({"Ref": …}, {"Fn::GetAtt": […]}, …) so that Resolve can evaluate them.
type Template struct {
	Parameters map[string]Parameter `yaml:"Parameters"`
	Globals    struct {
		Function map[string]any `yaml:"Function"`
	} `yaml:"Globals"`
	Resources map[string]Resource `yaml:"Resources"`
}

// Parameter is a template parameter.
type Parameter struct {
	Type    string `yaml:"Type"`
	Default any    `yaml:"Default"`
}

// Resource is a template resource.
type Resource struct {
	Type                string         `yaml:"Type"`
	Properties          map[string]any `yaml:"Properties"`
	Metadata            map[string]any `yaml:"Metadata"`
	DeletionPolicy      string         `yaml:"DeletionPolicy"`
	UpdateReplacePolicy string         `yaml:"UpdateReplacePolicy"`
}

// OfType returns the logical ids of the template's resources of type typ, sorted.
func (t *Template) OfType(typ string) []string {
	var ids []string
	for id, r := range t.Resources {
		if r.Type == typ {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// LoadTemplate reads and parses a template file.
func LoadTemplate(path string) (*Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("lambdatest: parse %s: %w", path, err)
	}
	if err := longForm(&root); err != nil {
		return nil, fmt.Errorf("lambdatest: %s: %w", path, err)
	}
	var t Template
	if err := root.Decode(&t); err != nil {
		return nil, fmt.Errorf("lambdatest: decode %s: %w", path, err)
	}
	return &t, nil
}

// Functions returns the logical ids of the template's AWS::Serverless::Function resources,
// sorted.
func (t *Template) Functions() []string {
	return t.OfType("AWS::Serverless::Function")
}

// FunctionProperty returns a function's property, or the Globals value when the function does
// not set it, as SAM merges them.
func (t *Template) FunctionProperty(id, name string) any {
	if v, ok := t.Resources[id].Properties[name]; ok {
		return v
	}
	return t.Globals.Function[name]
}

// FunctionEnvironment returns a function's environment variables, the Globals' merged with its
// own, resolved against refs.
func (t *Template) FunctionEnvironment(id string, refs map[string]string) (map[string]string, error) {
	env := map[string]string{}
	for _, src := range []map[string]any{t.Globals.Function, t.Resources[id].Properties} {
		vars, _ := dig(src, "Environment", "Variables").(map[string]any)
		for k, v := range vars {
			s, err := ResolveString(v, refs)
			if err != nil {
				return nil, fmt.Errorf("lambdatest: %s environment %s: %w", id, k, err)
			}
			env[k] = s
		}
	}
	return env, nil
}

// dig walks nested maps by key.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// longForm rewrites tagged nodes (!Ref X) into the mapping form ({Ref: X}) in place.
func longForm(n *yaml.Node) error {
	for _, c := range n.Content {
		if err := longForm(c); err != nil {
			return err
		}
	}
	tag := n.Tag
	if !strings.HasPrefix(tag, "!") || strings.HasPrefix(tag, "!!") {
		return nil
	}
	name := tag[1:]
	key := "Fn::" + name
	if name == "Ref" || name == "Condition" {
		key = name
	}
	value := *n
	value.Tag = ""
	switch value.Kind {
	case yaml.ScalarNode:
		value.Tag = "!!str"
		if name == "GetAtt" {
			res, attr, ok := strings.Cut(value.Value, ".")
			if !ok {
				return fmt.Errorf("line %d: !GetAtt %q needs Resource.Attribute", n.Line, value.Value)
			}
			value = yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: []*yaml.Node{
				{Kind: yaml.ScalarNode, Tag: "!!str", Value: res}, {Kind: yaml.ScalarNode, Tag: "!!str", Value: attr}}}
		}
	case yaml.SequenceNode:
		value.Tag = "!!seq"
	case yaml.MappingNode:
		value.Tag = "!!map"
	}
	*n = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: n.Line, Column: n.Column, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, &value}}
	return nil
}

// Pseudo-parameters that Resolve knows; refs may override them.
var pseudo = map[string]string{
	"AWS::Region":    "us-east-1",
	"AWS::AccountId": "123456789012",
	"AWS::Partition": "aws",
	"AWS::URLSuffix": "amazonaws.com",
}

// Resolve evaluates the intrinsics Ref, Fn::GetAtt, Fn::Sub and Fn::Join in v. refs holds the
// value of each Ref (parameters and resources by logical id) and of each GetAtt as
// "Resource.Attribute". Anything it cannot evaluate is an error, so a template change that the
// tests cannot follow fails loudly.
func Resolve(v any, refs map[string]string) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		if len(v) == 1 {
			for k, arg := range v {
				if k == "Ref" || strings.HasPrefix(k, "Fn::") {
					return intrinsic(k, arg, refs)
				}
			}
		}
		out := make(map[string]any, len(v))
		for k, e := range v {
			r, err := Resolve(e, refs)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = r
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			r, err := Resolve(e, refs)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	}
	return v, nil
}

// ResolveString resolves v and formats the result as CloudFormation passes a scalar.
func ResolveString(v any, refs map[string]string) (string, error) {
	r, err := Resolve(v, refs)
	if err != nil {
		return "", err
	}
	switch r := r.(type) {
	case string:
		return r, nil
	case int:
		return strconv.Itoa(r), nil
	case bool:
		return strconv.FormatBool(r), nil
	case float64:
		return strconv.FormatFloat(r, 'f', -1, 64), nil
	}
	return "", fmt.Errorf("%v is not a scalar", r)
}

var subVar = regexp.MustCompile(`\$\{([^}!]+)\}`)

func intrinsic(fn string, arg any, refs map[string]string) (any, error) {
	lookup := func(name string) (string, error) {
		if v, ok := refs[name]; ok {
			return v, nil
		}
		if v, ok := pseudo[name]; ok {
			return v, nil
		}
		return "", fmt.Errorf("no value for %q", name)
	}
	switch fn {
	case "Ref":
		name, ok := arg.(string)
		if !ok {
			return nil, fmt.Errorf("Ref of %v", arg)
		}
		return lookup(name)
	case "Fn::GetAtt":
		parts, ok := arg.([]any)
		if !ok || len(parts) != 2 {
			return nil, fmt.Errorf("Fn::GetAtt of %v", arg)
		}
		return lookup(fmt.Sprintf("%v.%v", parts[0], parts[1]))
	case "Fn::Sub":
		format, vars := arg, map[string]any{}
		if list, ok := arg.([]any); ok && len(list) == 2 {
			format = list[0]
			vars, _ = list[1].(map[string]any)
		}
		s, ok := format.(string)
		if !ok {
			return nil, fmt.Errorf("Fn::Sub of %v", arg)
		}
		var err error
		out := subVar.ReplaceAllStringFunc(s, func(m string) string {
			name := m[2 : len(m)-1]
			if v, ok := vars[name]; ok {
				r, rerr := ResolveString(v, refs)
				if rerr != nil {
					err = rerr
				}
				return r
			}
			r, lerr := lookup(name)
			if lerr != nil {
				err = lerr
			}
			return r
		})
		return out, err
	case "Fn::Join":
		list, ok := arg.([]any)
		if !ok || len(list) != 2 {
			return nil, fmt.Errorf("Fn::Join of %v", arg)
		}
		sep, _ := list[0].(string)
		items, err := Resolve(list[1], refs)
		if err != nil {
			return nil, err
		}
		parts, _ := items.([]any)
		strs := make([]string, len(parts))
		for i, p := range parts {
			if strs[i], err = ResolveString(p, refs); err != nil {
				return nil, err
			}
		}
		return strings.Join(strs, sep), nil
	}
	return nil, fmt.Errorf("the tests do not evaluate %s", fn)
}
