package tfcheck

import (
	_ "embed"
	"encoding/csv"
	"fmt"
	"regexp"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// What Cloud Monitoring requires of an alert condition's filter, and what
// makes a log-based metric trustworthy, neither of which the provider
// schema says:
//   - a condition's filter (and denominator_filter) names a metric type and
//     restricts resource.type; the Monitoring API refuses one without the
//     restriction with 400 "must specify a restriction on resource.type";
//   - the metric exists: a google_logging_metric of this configuration
//     (logging.googleapis.com/user/NAME) or one of the built-in metrics in
//     builtin_metrics.csv, and the filter's resource type is the one the
//     metric is written against (a log-based metric's is the resource of
//     the log entries its own filter selects);
//   - a log-based metric selects entries by resource.type and by the
//     structured jsonPayload.event that sandrun's programs write, never by
//     textPayload, which any line on a program's output can match.

//go:embed builtin_metrics.csv
var builtinMetricsCSV string

// builtinMetrics maps a built-in metric type to its monitored resource type.
var builtinMetrics = func() map[string]string {
	recs, err := csv.NewReader(strings.NewReader(builtinMetricsCSV)).ReadAll()
	if err != nil || len(recs) == 0 {
		panic(fmt.Sprintf("tfcheck: builtin_metrics.csv: %v", err))
	}
	out := map[string]string{}
	for _, r := range recs[1:] {
		out[r[0]] = r[1]
	}
	return out
}()

const userMetricPrefix = "logging.googleapis.com/user/"

var (
	metricTypeRE   = regexp.MustCompile(`metric\.type\s*=\s*"([^"]*)"`)
	resourceTypeRE = regexp.MustCompile(`resource\.type\s*=\s*"([^"]*)"`)
	eventRE        = regexp.MustCompile(`jsonPayload\.event\s*[=:]`)
)

// checkMonitoring applies the rules above to every log-based metric and
// alert policy.
func (m *module) checkMonitoring() {
	logResource := map[string]string{} // google_logging_metric name -> resource.type its filter selects
	for _, key := range sortedKeys(m.resources) {
		r := m.resources[key]
		if r.data || r.typ != "google_logging_metric" {
			continue
		}
		a := r.block.Body.Attributes["filter"]
		if a == nil {
			continue
		}
		filter := m.render(a.Expr)
		where := r.node + ": filter"
		if strings.Contains(filter, "textPayload") {
			m.errorf(a.Expr.Range(), "%s matches textPayload, which any line a program or a command prints can match; match sandrun's structured jsonPayload.event", where)
		}
		if !eventRE.MatchString(filter) {
			m.errorf(a.Expr.Range(), "%s does not select by jsonPayload.event, the structured field sandrun's programs write", where)
		}
		types := resourceTypeRE.FindAllStringSubmatch(filter, -1)
		if len(types) != 1 {
			m.errorf(a.Expr.Range(), "%s must restrict resource.type exactly once (found %d): its metric is written against the log entries' resource, which an alert must name", where, len(types))
			continue
		}
		logResource[r.name] = types[0][1]
	}
	for _, key := range sortedKeys(m.resources) {
		r := m.resources[key]
		if r.data || r.typ != "google_monitoring_alert_policy" {
			continue
		}
		for _, cond := range findBlocks(r.block.Body, "conditions") {
			for _, b := range cond.Body.Blocks {
				if !strings.HasPrefix(b.Type, "condition_") {
					continue
				}
				for _, arg := range []string{"filter", "denominator_filter"} {
					if a := b.Body.Attributes[arg]; a != nil {
						m.checkAlertFilter(r.node+": "+b.Type+"."+arg, a, logResource)
					}
				}
			}
		}
	}
}

// checkAlertFilter checks one alert condition filter.
func (m *module) checkAlertFilter(where string, a *hclsyntax.Attribute, logResource map[string]string) {
	filter := m.render(a.Expr)
	metrics := metricTypeRE.FindAllStringSubmatch(filter, -1)
	types := resourceTypeRE.FindAllStringSubmatch(filter, -1)
	if len(metrics) != 1 {
		m.errorf(a.Expr.Range(), "%s must name exactly one metric.type (found %d)", where, len(metrics))
		return
	}
	if len(types) != 1 {
		m.errorf(a.Expr.Range(), "%s has no restriction on resource.type, which Cloud Monitoring requires (found %d)", where, len(types))
		return
	}
	metric, resType := metrics[0][1], types[0][1]
	var want string
	if name, ok := strings.CutPrefix(metric, userMetricPrefix); ok {
		name = strings.TrimSuffix(strings.TrimPrefix(name, "{google_logging_metric."), "}")
		res, declared := logResource[name]
		if _, exists := m.resources["google_logging_metric."+name]; !exists {
			m.errorf(a.Expr.Range(), "%s names the log-based metric %q, which no google_logging_metric defines", where, name)
			return
		}
		if !declared {
			return // reported on the metric itself
		}
		want = res
	} else {
		res, ok := builtinMetrics[metric]
		if !ok {
			m.errorf(a.Expr.Range(), "%s names the metric %q, which is neither a google_logging_metric here nor a built-in metric listed in tfcheck/builtin_metrics.csv", where, metric)
			return
		}
		want = res
	}
	if resType != want {
		m.errorf(a.Expr.Range(), "%s restricts resource.type to %q, but %s is written against %q", where, resType, metric, want)
	}
}

// render returns the text an expression makes, as far as it is known
// before apply: literals as they are, locals followed, join() applied, a
// reference to a log-based metric's name as {google_logging_metric.NAME},
// and anything else unknown as {?}.
func (m *module) render(e hclsyntax.Expression) string {
	switch e := e.(type) {
	case *hclsyntax.TemplateExpr:
		var sb strings.Builder
		for _, p := range e.Parts {
			sb.WriteString(m.render(p))
		}
		return sb.String()
	case *hclsyntax.TemplateWrapExpr:
		return m.render(e.Wrapped)
	case *hclsyntax.LiteralValueExpr:
		if e.Val.Type() == cty.String && e.Val.IsKnown() {
			return e.Val.AsString()
		}
	case *hclsyntax.ScopeTraversalExpr:
		tr := e.Traversal
		if tr.RootName() == "google_logging_metric" && len(tr) == 3 {
			if a, ok := tr[1].(hcl.TraverseAttr); ok {
				return "{google_logging_metric." + a.Name + "}"
			}
		}
		if tr.RootName() == "local" && len(tr) == 2 {
			if a, ok := tr[1].(hcl.TraverseAttr); ok {
				if l := m.locals[a.Name]; l != nil {
					return m.render(l.attr.Expr)
				}
			}
		}
	case *hclsyntax.FunctionCallExpr:
		if e.Name == "join" && len(e.Args) == 2 {
			list, ok := e.Args[1].(*hclsyntax.TupleConsExpr)
			if ok {
				parts := make([]string, len(list.Exprs))
				for i, x := range list.Exprs {
					parts[i] = m.render(x)
				}
				return strings.Join(parts, m.render(e.Args[0]))
			}
		}
	}
	return "{?}"
}
