package lambdatest

import (
	"fmt"
	"maps"
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
	Conditions map[string]any       `yaml:"Conditions"`
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
	refs, err := t.WithConditions(refs)
	if err != nil {
		return nil, err
	}
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

// conditionPrefix marks a condition's value among refs, where Fn::If reads it.
const conditionPrefix = "Condition::"

// WithConditions returns refs with the value of each of the template's conditions, evaluated
// with refs (Fn::Equals, Fn::Not, Fn::And, Fn::Or, and Condition of another), for Fn::If.
func (t *Template) WithConditions(refs map[string]string) (map[string]string, error) {
	out := maps.Clone(refs)
	if out == nil {
		out = map[string]string{}
	}
	var eval func(name string, depth int) (bool, error)
	eval = func(name string, depth int) (bool, error) {
		if v, ok := out[conditionPrefix+name]; ok {
			return v == "true", nil
		}
		def, ok := t.Conditions[name]
		if !ok || depth > 10 {
			return false, fmt.Errorf("lambdatest: no condition %q", name)
		}
		v, err := condition(def, out, func(n string) (bool, error) { return eval(n, depth+1) })
		if err != nil {
			return false, fmt.Errorf("lambdatest: condition %s: %w", name, err)
		}
		out[conditionPrefix+name] = strconv.FormatBool(v)
		return v, nil
	}
	for name := range t.Conditions {
		if _, err := eval(name, 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// condition evaluates one condition function.
func condition(v any, refs map[string]string, named func(string) (bool, error)) (bool, error) {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return false, fmt.Errorf("%v is not a condition function", v)
	}
	for fn, arg := range m {
		list, _ := arg.([]any)
		switch fn {
		case "Condition":
			name, _ := arg.(string)
			return named(name)
		case "Fn::Equals":
			if len(list) != 2 {
				return false, fmt.Errorf("Fn::Equals of %v", arg)
			}
			a, err := ResolveString(list[0], refs)
			if err != nil {
				return false, err
			}
			b, err := ResolveString(list[1], refs)
			return a == b, err
		case "Fn::Not", "Fn::And", "Fn::Or":
			all, some := true, false
			for _, c := range list {
				r, err := condition(c, refs, named)
				if err != nil {
					return false, err
				}
				all, some = all && r, some || r
			}
			switch fn {
			case "Fn::Not":
				return !all, nil
			case "Fn::And":
				return all, nil
			}
			return some, nil
		}
		return false, fmt.Errorf("the tests do not evaluate %s in a condition", fn)
	}
	return false, nil
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

// Resolve evaluates the intrinsics Ref, Fn::GetAtt, Fn::Sub, Fn::Join and Fn::If in v. refs holds the
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
	case "Fn::If":
		list, ok := arg.([]any)
		if !ok || len(list) != 3 {
			return nil, fmt.Errorf("Fn::If of %v", arg)
		}
		name, _ := list[0].(string)
		v, ok := refs[conditionPrefix+name]
		if !ok {
			return nil, fmt.Errorf("Fn::If of the condition %q, which was not evaluated (Template.WithConditions)", name)
		}
		if v == "true" {
			return Resolve(list[1], refs)
		}
		return Resolve(list[2], refs)
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
