# Secrets Manager secrets of one place and, per workload, an IAM role its Kubernetes
# service account assumes (IRSA) that may read its own secrets and nothing else.
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = "~> 5.100" }
  }
}

variable "name" {
  type        = string
  description = "Prefix of the roles (cordon-eu-west, cordon-central)."
}

variable "place" {
  type        = string
  description = "Secrets live under cordon/<place>/."
}

variable "namespace" {
  type = string
}

variable "access" {
  type        = map(list(string))
  description = "Workload -> the secrets it may read."
}

variable "kms_key_arn" {
  type = string
}

variable "oidc_provider_arn" {
  type = string
}

variable "oidc_issuer" {
  type = string
}

resource "aws_secretsmanager_secret" "this" {
  for_each                = toset(flatten(values(var.access)))
  name                    = "cordon/${var.place}/${each.key}"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 30
  #checkov:skip=CKV2_AWS_57:Cordon keys rotate by enrolling a new key (cordon audit verify follows enrolments); the database uses IAM authentication.
}

data "aws_iam_policy_document" "assume" {
  for_each = var.access
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${replace(var.oidc_issuer, "https://", "")}:sub"
      values   = ["system:serviceaccount:${var.namespace}:cordon-${each.key}"]
    }
  }
}

data "aws_iam_policy_document" "read" {
  for_each = var.access
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [for name in each.value : aws_secretsmanager_secret.this[name].arn]
  }
  statement {
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role" "workload" {
  for_each           = var.access
  name               = "${var.name}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.assume[each.key].json
}

resource "aws_iam_role_policy" "workload" {
  for_each = var.access
  role     = aws_iam_role.workload[each.key].id
  policy   = data.aws_iam_policy_document.read[each.key].json
}

output "role_arns" {
  value = { for k, role in aws_iam_role.workload : k => role.arn }
}

output "secret_arns" {
  value = { for k, secret in aws_secretsmanager_secret.this : k => secret.arn }
}

output "service_account_patches" {
  description = "One kustomize patch per workload: its ServiceAccount, annotated with its role (IRSA)."
  value = [
    for k, role in aws_iam_role.workload : yamlencode({
      apiVersion = "v1"
      kind       = "ServiceAccount"
      metadata = {
        name        = "cordon-${k}"
        annotations = { "eks.amazonaws.com/role-arn" = role.arn }
      }
    })
  ]
}
