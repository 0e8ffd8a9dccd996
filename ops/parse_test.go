package ops

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// A strict parser of the Prometheus text format (0.0.4), for the tests:
// it refuses anything Prometheus would refuse and some things it would
// merely tolerate (a family without HELP, an empty HELP, samples of one
// family in two groups, a histogram whose buckets are not cumulative).

type family struct {
	name, help, typ string
	samples         []sample
}

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

func (f *family) value(name string, labels ...string) (float64, bool) {
	for _, s := range f.samples {
		if s.name == name && labelsMatch(s.labels, labels) {
			return s.value, true
		}
	}
	return 0, false
}

func labelsMatch(have map[string]string, want []string) bool {
	if len(want)%2 != 0 {
		panic("labels come in pairs")
	}
	if len(have) != len(want)/2 {
		return false
	}
	for i := 0; i < len(want); i += 2 {
		if have[want[i]] != want[i+1] {
			return false
		}
	}
	return true
}

func parseExposition(text string) (map[string]*family, error) {
	fams := make(map[string]*family)
	var cur *family
	closed := make(map[string]bool)
	seriesSeen := make(map[string]bool)
	if text != "" && !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("exposition does not end with a newline")
	}
	for n, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		lineNo := n + 1
		if line == "" {
			return nil, fmt.Errorf("line %d: empty line", lineNo)
		}
		if strings.HasPrefix(line, "#") {
			parts := strings.SplitN(line, " ", 4)
			if len(parts) < 4 || (parts[1] != "HELP" && parts[1] != "TYPE") {
				return nil, fmt.Errorf("line %d: comment that is not HELP/TYPE with text: %q", lineNo, line)
			}
			name := parts[2]
			if !validMetricName(name) {
				return nil, fmt.Errorf("line %d: bad family name %q", lineNo, name)
			}
			if closed[name] {
				return nil, fmt.Errorf("line %d: metadata for %s after its samples ended", lineNo, name)
			}
			f := fams[name]
			if f == nil {
				f = &family{name: name}
				fams[name] = f
			}
			if cur != nil && cur != f {
				closed[cur.name] = true
			}
			cur = f
			if len(f.samples) > 0 {
				return nil, fmt.Errorf("line %d: metadata for %s after its samples", lineNo, name)
			}
			switch parts[1] {
			case "HELP":
				if f.help != "" {
					return nil, fmt.Errorf("line %d: second HELP for %s", lineNo, name)
				}
				if strings.TrimSpace(parts[3]) == "" {
					return nil, fmt.Errorf("line %d: empty HELP for %s", lineNo, name)
				}
				f.help = parts[3]
			case "TYPE":
				if f.typ != "" {
					return nil, fmt.Errorf("line %d: second TYPE for %s", lineNo, name)
				}
				if f.help == "" {
					return nil, fmt.Errorf("line %d: TYPE before HELP for %s", lineNo, name)
				}
				switch parts[3] {
				case "counter", "gauge", "histogram", "summary", "untyped":
				default:
					return nil, fmt.Errorf("line %d: unknown type %q", lineNo, parts[3])
				}
				f.typ = parts[3]
			}
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		if cur == nil || !belongsTo(s.name, cur) {
			return nil, fmt.Errorf("line %d: sample %s outside its family's group (HELP/TYPE must precede it)", lineNo, s.name)
		}
		if cur.typ == "" {
			return nil, fmt.Errorf("line %d: sample of %s before its TYPE", lineNo, cur.name)
		}
		key := s.name + fmt.Sprint(sortedLabels(s.labels))
		if seriesSeen[key] {
			return nil, fmt.Errorf("line %d: duplicate series %s", lineNo, key)
		}
		seriesSeen[key] = true
		cur.samples = append(cur.samples, s)
	}
	for _, f := range fams {
		if f.help == "" || f.typ == "" {
			return nil, fmt.Errorf("family %s lacks HELP or TYPE", f.name)
		}
		if f.typ == "histogram" {
			if err := checkHistogram(f); err != nil {
				return nil, err
			}
		}
		if f.typ == "counter" {
			for _, s := range f.samples {
				if s.value < 0 || math.IsNaN(s.value) {
					return nil, fmt.Errorf("counter %s has value %v", s.name, s.value)
				}
			}
		}
	}
	return fams, nil
}

func belongsTo(name string, f *family) bool {
	if name == f.name {
		return f.typ != "histogram" // a summary's quantile series share its name
	}
	switch f.typ {
	case "histogram":
		return name == f.name+"_bucket" || name == f.name+"_sum" || name == f.name+"_count"
	case "summary":
		return name == f.name+"_sum" || name == f.name+"_count"
	}
	return false
}

func sortedLabels(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	// insertion sort: few labels
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + strconv.Quote(l[k]) + ",")
	}
	return b.String()
}

func parseSample(line string) (sample, error) {
	s := sample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return s, fmt.Errorf("no metric name in %q", line)
	}
	s.name = line[:i]
	if !validMetricName(s.name) {
		return s, fmt.Errorf("bad metric name %q", s.name)
	}
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.IndexByte(rest, '=')
			if eq <= 0 {
				return s, fmt.Errorf("bad label in %q", line)
			}
			name := rest[:eq]
			if !validMetricName(name) || strings.Contains(name, ":") {
				return s, fmt.Errorf("bad label name %q", name)
			}
			rest = rest[eq+1:]
			if !strings.HasPrefix(rest, `"`) {
				return s, fmt.Errorf("label %s value not quoted in %q", name, line)
			}
			var val strings.Builder
			j := 1
			for ; j < len(rest) && rest[j] != '"'; j++ {
				if rest[j] == '\\' {
					j++
					if j == len(rest) {
						return s, fmt.Errorf("dangling escape in %q", line)
					}
					switch rest[j] {
					case '\\', '"':
						val.WriteByte(rest[j])
					case 'n':
						val.WriteByte('\n')
					default:
						return s, fmt.Errorf("bad escape \\%c in %q", rest[j], line)
					}
					continue
				}
				val.WriteByte(rest[j])
			}
			if j == len(rest) {
				return s, fmt.Errorf("unterminated label value in %q", line)
			}
			if _, dup := s.labels[name]; dup {
				return s, fmt.Errorf("label %s twice in %q", name, line)
			}
			s.labels[name] = val.String()
			rest = rest[j+1:]
			if strings.HasPrefix(rest, ",") {
				rest = rest[1:]
			} else if !strings.HasPrefix(rest, "}") {
				return s, fmt.Errorf("expected , or } in %q", line)
			}
		}
	}
	if !strings.HasPrefix(rest, " ") {
		return s, fmt.Errorf("no space before value in %q", line)
	}
	fields := strings.Fields(rest)
	if len(fields) < 1 || len(fields) > 2 {
		return s, fmt.Errorf("want value [timestamp] in %q", line)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, fmt.Errorf("bad value in %q: %w", line, err)
	}
	s.value = v
	return s, nil
}

// checkHistogram checks each series: le buckets ascending with
// non-decreasing counts, a +Inf bucket equal to _count.
func checkHistogram(f *family) error {
	type series struct {
		les    []float64
		counts []float64
		count  float64
		hasCnt bool
	}
	all := make(map[string]*series)
	get := func(l map[string]string) *series {
		k := sortedLabels(l)
		if all[k] == nil {
			all[k] = &series{}
		}
		return all[k]
	}
	for _, s := range f.samples {
		switch s.name {
		case f.name + "_bucket":
			le, ok := s.labels["le"]
			if !ok {
				return fmt.Errorf("%s: bucket without le", f.name)
			}
			v, err := strconv.ParseFloat(le, 64)
			if err != nil {
				return fmt.Errorf("%s: bad le %q", f.name, le)
			}
			rest := make(map[string]string)
			for k, val := range s.labels {
				if k != "le" {
					rest[k] = val
				}
			}
			sr := get(rest)
			if n := len(sr.les); n > 0 && (v <= sr.les[n-1] || s.value < sr.counts[n-1]) {
				return fmt.Errorf("%s%v: buckets not ascending or not cumulative at le=%s", f.name, rest, le)
			}
			sr.les = append(sr.les, v)
			sr.counts = append(sr.counts, s.value)
		case f.name + "_count":
			sr := get(s.labels)
			sr.count, sr.hasCnt = s.value, true
		case f.name + "_sum":
		default:
			return fmt.Errorf("%s: unexpected sample %s", f.name, s.name)
		}
	}
	for k, sr := range all {
		n := len(sr.les)
		if n == 0 || !math.IsInf(sr.les[n-1], 1) {
			return fmt.Errorf("%s{%s}: no +Inf bucket", f.name, k)
		}
		if !sr.hasCnt || sr.count != sr.counts[n-1] {
			return fmt.Errorf("%s{%s}: _count %v != +Inf bucket %v", f.name, k, sr.count, sr.counts[n-1])
		}
	}
	return nil
}
