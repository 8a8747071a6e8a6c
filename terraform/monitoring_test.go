package terraform

import (
	"strings"
	"testing"
)

// TestAlertTargets checks that the alerts fire at the targets sandrun is
// held to: success below 99 %, end-to-end p99 above 15 s, error rate above
// 1 %, with the rates computed as ratios of two series.
func TestAlertTargets(t *testing.T) {
	c := parse(t)
	num := func(variable string) float64 {
		f, _ := c.literal(c.one("variable", variable), "default").AsBigFloat().Float64()
		return f
	}
	if got := num("success_rate_objective"); got != 0.99 {
		t.Errorf("success_rate_objective = %v, want 0.99", got)
	}
	if got := num("end_to_end_p99_seconds"); got != 15 {
		t.Errorf("end_to_end_p99_seconds = %v, want 15", got)
	}
	if got := num("error_rate_objective"); got != 0.01 {
		t.Errorf("error_rate_objective = %v, want 0.01", got)
	}

	tests := []struct {
		alert, threshold, metric, reducer string
		ratio                             bool
	}{
		{"success_rate", "1 - var.success_rate_objective", "requests_done", "REDUCE_SUM", true},
		{"end_to_end_latency", "var.end_to_end_p99_seconds", "end_to_end", "REDUCE_PERCENTILE_99", false},
		{"error_rate", "var.error_rate_objective", "dispatch_outcomes", "REDUCE_SUM", true},
	}
	for _, tt := range tests {
		b := c.one("resource", "google_monitoring_alert_policy", tt.alert)
		if got := c.text(b, "conditions.condition_threshold.threshold_value"); got != tt.threshold {
			t.Errorf("%s fires at %s, want %s", tt.alert, got, tt.threshold)
		}
		filter := c.text(b, "conditions.condition_threshold.filter")
		if !strings.Contains(filter, "google_logging_metric."+tt.metric+".name") {
			t.Errorf("%s reads %s, want google_logging_metric.%s", tt.alert, filter, tt.metric)
		}
		if got := c.text(b, "conditions.condition_threshold.aggregations.cross_series_reducer"); got != `"`+tt.reducer+`"` {
			t.Errorf("%s reduces with %s, want %s", tt.alert, got, tt.reducer)
		}
		_, hasDenominator := nestedAttr(firstBlock(b, "conditions"), "condition_threshold", "denominator_filter")
		if hasDenominator != tt.ratio {
			t.Errorf("%s: denominator_filter set = %v, want %v (a rate is a ratio of two series)", tt.alert, hasDenominator, tt.ratio)
		}
	}
}
