# The us-east region, in AWS us-east-1. State in S3 (terraform init -backend-config=...).
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
    tags = { "cordon.dev/region" = "us-east", "cordon.dev/managed-by" = "terraform" }
  }
}

variable "aws_region" {
  type    = string
  default = "us-east-1"
}

variable "records_retention_days" {
  type    = number
  default = 365
}

module "region" {
  source                 = "../modules/region"
  region                 = "us-east"
  cidr                   = "10.30.0.0/16"
  records_retention_days = var.records_retention_days
}

output "overlay" {
  description = "Feed to deploy/kubernetes/overlays/us-east (docs/deploy.md)."
  value       = module.region.overlay
}

output "kustomize_patch" {
  description = "terraform output -raw kustomize_patch > deploy/kubernetes/overlays/us-east/terraform-patch.yaml"
  value       = module.region.kustomize_patch
}
