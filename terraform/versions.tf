# The provider is pinned to the 6.50 line: terraform_test.go checks every
# resource here against that release's schema
# (../shared/terraform/google-provider-6.50.0.schema.json.gz).
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.50"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region

  # Every resource that takes labels gets these, so that a bill or an asset
  # inventory can be filtered down to one deployment.
  default_labels = merge(var.labels, {
    app = var.name_prefix
  })
}
