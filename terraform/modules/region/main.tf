# One Cordon region in AWS: its own VPC, EKS cluster, KMS key, the region's secrets in
# Secrets Manager, and IAM roles scoped to this region's workloads and secrets. Nothing
# here is shared with another region: the regional signing key and pseudonym secret
# never leave it.
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = "~> 5.100" }
  }
}

variable "region" {
  type        = string
  description = "Cordon's name for the region (eu-west, us-east, ...): names, namespace, tags."
}

variable "cidr" {
  type    = string
  default = "10.20.0.0/16"
}

variable "records_retention_days" {
  type        = number
  default     = 365
  description = "How long RECORDS keeps decision records (and the logs here are kept)."
}

variable "nats_volume_gib" {
  type    = number
  default = 200
}

variable "workload_nodes" {
  type    = object({ min = number, desired = number, max = number })
  default = { min = 2, desired = 3, max = 10 }
}

locals {
  name      = "cordon-${var.region}"
  namespace = "cordon-${var.region}"
  # Which secrets each workload may read (Secrets Manager names under cordon/<region>/).
  access = {
    gateway   = ["gateway-identity", "provider-keys"]
    sealer    = ["sealer-identity"]
    audit-api = ["audit-api-identity"]
    nats      = ["nats-leaf", "nats-tls"]
  }
}

module "kms" {
  source      = "../kms"
  name        = local.name
  description = "Cordon ${var.region}: EKS secrets, Secrets Manager, logs"
}

module "network" {
  source             = "../network"
  name               = local.name
  cidr               = var.cidr
  kms_key_arn        = module.kms.arn
  log_retention_days = var.records_retention_days
}

module "cluster" {
  source         = "../cluster"
  name           = local.name
  subnet_ids     = module.network.private_subnet_ids
  kms_key_arn    = module.kms.arn
  workload_nodes = var.workload_nodes
}

module "access" {
  source            = "../access"
  name              = local.name
  place             = var.region
  namespace         = local.namespace
  access            = local.access
  kms_key_arn       = module.kms.arn
  oidc_provider_arn = module.cluster.oidc_provider_arn
  oidc_issuer       = module.cluster.oidc_issuer
}

output "overlay" {
  description = "What deploy/kubernetes/overlays/<region> needs."
  value = {
    region        = var.region
    namespace     = local.namespace
    cluster       = module.cluster.name
    endpoint      = module.cluster.endpoint
    role_arns     = module.access.role_arns
    secret_arns   = module.access.secret_arns
    kms_key_arn   = module.kms.arn
    nats_volume   = var.nats_volume_gib
    retention_day = var.records_retention_days
  }
}

output "kustomize_patch" {
  description = "deploy/kubernetes/overlays/<region>/terraform-patch.yaml: each workload's role, the NATS volume size."
  value = join("---\n", concat(module.access.service_account_patches, [yamlencode({
    apiVersion = "apps/v1"
    kind       = "StatefulSet"
    metadata   = { name = "nats" }
    spec = {
      volumeClaimTemplates = [{
        metadata = { name = "data" }
        spec = {
          accessModes = ["ReadWriteOnce"]
          resources   = { requests = { storage = "${var.nats_volume_gib}Gi" } }
        }
      }]
    }
  })]))
}
