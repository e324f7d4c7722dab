# Central, in AWS eu-central-1. State in S3 (terraform init -backend-config=...).
terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = { source = "hashicorp/aws", version = "~> 5.100" }
  }
  backend "s3" {}
}

provider "aws" {
  region = var.aws_region
  default_tags {
    tags = { "cordon.dev/region" = "central", "cordon.dev/managed-by" = "terraform" }
  }
}

variable "aws_region" {
  type    = string
  default = "eu-central-1"
}

variable "regions" {
  type    = list(string)
  default = ["eu-west", "us-east"]
}

module "central" {
  source  = "../modules/central"
  regions = var.regions
}

output "overlay" {
  description = "Feed to deploy/kubernetes/overlays/central (docs/deploy.md)."
  value       = module.central.overlay
}

output "kustomize_patch" {
  description = "terraform output -raw kustomize_patch > deploy/kubernetes/overlays/central/terraform-patch.yaml"
  value       = module.central.kustomize_patch
}
