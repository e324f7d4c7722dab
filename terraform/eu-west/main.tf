# The eu-west region, in AWS eu-west-1. State in S3 (terraform init -backend-config=...).
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
    tags = { "cordon.dev/region" = "eu-west", "cordon.dev/managed-by" = "terraform" }
  }
}

variable "aws_region" {
  type    = string
  default = "eu-west-1"
}

variable "records_retention_days" {
  type    = number
  default = 365
}

module "region" {
  source                 = "../modules/region"
  region                 = "eu-west"
  cidr                   = "10.20.0.0/16"
  records_retention_days = var.records_retention_days
}

output "overlay" {
  description = "Feed to deploy/kubernetes/overlays/eu-west (docs/deploy.md)."
  value       = module.region.overlay
}

output "kustomize_patch" {
  description = "terraform output -raw kustomize_patch > deploy/kubernetes/overlays/eu-west/terraform-patch.yaml"
  value       = module.region.kustomize_patch
}
