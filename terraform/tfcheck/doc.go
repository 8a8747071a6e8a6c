// Package tfcheck checks a Terraform configuration offline, against a
// provider schema in the format of `terraform providers schema -json`, where
// `terraform validate` cannot run because no provider can be downloaded.
//
// It parses every .tf file and reports, each with its file and line:
// files that `terraform fmt` would change; unknown block types, resource
// types, arguments and nested blocks; computed-only attributes that are set;
// missing required arguments and blocks; too many or too few nested blocks
// for their nesting mode; misused meta-arguments (count, for_each,
// depends_on, provider, lifecycle, dynamic blocks); references that do not
// resolve (var, local, resources and their attributes, data, module, each,
// count, self, path, terraform, dynamic iterators); values whose type cannot
// convert to the argument's type, which it finds by evaluating every
// expression with typed unknown values for what is only known at apply time;
// calls to unknown functions; dependency cycles; variables or locals that
// nothing uses; and what Cloud Monitoring requires of alert filters (a
// metric type and a resource.type restriction, a metric that exists: a
// log-based metric defined here or a built-in one from builtin_metrics.csv)
// and of sandrun's log-based metrics (alerts.go).
//
// It does not know the provider's own validation (allowed enum values,
// conflicting arguments, value ranges) nor the provider block's schema,
// which `terraform providers schema -json` does not describe here.
package tfcheck
