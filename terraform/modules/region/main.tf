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
    nats      = ["nats-leaf"]
  }
  secrets = toset(flatten(values(local.access)))
}

data "aws_caller_identity" "current" {}

data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_111:A key policy's resource "*" is this key alone; the account administers it.
  #checkov:skip=CKV_AWS_356:A key policy's resource "*" is this key alone.
  #checkov:skip=CKV_AWS_109:A key policy must let the account manage its own key.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
  statement {
    sid       = "LogsEncrypt"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "region" {
  description             = "Cordon ${var.region}: EKS secrets, Secrets Manager, logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "region" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.region.key_id
}

module "network" {
  source             = "../network"
  name               = local.name
  cidr               = var.cidr
  kms_key_arn        = aws_kms_key.region.arn
  log_retention_days = var.records_retention_days
}

module "cluster" {
  source         = "../cluster"
  name           = local.name
  subnet_ids     = module.network.private_subnet_ids
  kms_key_arn    = aws_kms_key.region.arn
  workload_nodes = var.workload_nodes
}

resource "aws_secretsmanager_secret" "this" {
  for_each                = local.secrets
  name                    = "cordon/${var.region}/${each.key}"
  kms_key_id              = aws_kms_key.region.arn
  recovery_window_in_days = 30
  #checkov:skip=CKV2_AWS_57:Cordon keys rotate by enrolling a new key (cordon audit verify follows enrolments), not by a Secrets Manager rotation function.
}

data "aws_iam_policy_document" "assume" {
  for_each = local.access
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [module.cluster.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${replace(module.cluster.oidc_issuer, "https://", "")}:sub"
      values   = ["system:serviceaccount:${local.namespace}:cordon-${each.key}"]
    }
  }
}

data "aws_iam_policy_document" "read" {
  for_each = local.access
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [for name in each.value : aws_secretsmanager_secret.this[name].arn]
  }
  statement {
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.region.arn]
  }
}

resource "aws_iam_role" "workload" {
  for_each           = local.access
  name               = "${local.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.assume[each.key].json
}

resource "aws_iam_role_policy" "workload" {
  for_each = local.access
  role     = aws_iam_role.workload[each.key].id
  policy   = data.aws_iam_policy_document.read[each.key].json
}

output "overlay" {
  description = "What deploy/kubernetes/overlays/<region> needs."
  value = {
    region        = var.region
    namespace     = local.namespace
    cluster       = module.cluster.name
    endpoint      = module.cluster.endpoint
    role_arns     = { for k, role in aws_iam_role.workload : k => role.arn }
    secret_arns   = { for k, secret in aws_secretsmanager_secret.this : k => secret.arn }
    kms_key_arn   = aws_kms_key.region.arn
    nats_volume   = var.nats_volume_gib
    retention_day = var.records_retention_days
  }
}
