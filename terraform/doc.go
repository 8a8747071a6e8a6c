// Package terraform holds sandrun's deployment: the Terraform configuration
// in this directory (*.tf) and the tests that check it offline against the
// Google provider's schema (terraform_test.go, package tfcheck). The Go
// package itself has no code; docs/deploy.md is the guide.
package terraform
