# Central: its own VPC and EKS cluster for the replicators and the aggregator, the
# aggregator's PostgreSQL (encrypted, Multi-AZ, IAM auth), central's secrets, and IAM
# roles scoped to central's workloads.
terraform {
  required_providers {
    aws = { source = "hashicorp/aws", version = "~> 5.100" }
  }
}

variable "regions" {
  type        = list(string)
  description = "The Cordon regions central serves (replicator fan-out, aggregator view)."
}

variable "cidr" {
  type    = string
  default = "10.10.0.0/16"
}

variable "db_instance_class" {
  type    = string
  default = "db.r6g.large"
}

variable "db_storage_gib" {
  type    = number
  default = 100
}

variable "log_retention_days" {
  type    = number
  default = 365
}

locals {
  name      = "cordon-central"
  namespace = "cordon-central"
  access = {
    replicator = ["replicator-identity"]
    aggregator = ["aggregator-identity", "aggregator-db"]
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

resource "aws_kms_key" "central" {
  description             = "Cordon central: EKS secrets, Secrets Manager, database, logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "central" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.central.key_id
}

module "network" {
  source             = "../network"
  name               = local.name
  cidr               = var.cidr
  kms_key_arn        = aws_kms_key.central.arn
  log_retention_days = var.log_retention_days
}

module "cluster" {
  source      = "../cluster"
  name        = local.name
  subnet_ids  = module.network.private_subnet_ids
  kms_key_arn = aws_kms_key.central.arn
}

resource "aws_secretsmanager_secret" "this" {
  for_each                = local.secrets
  name                    = "cordon/central/${each.key}"
  kms_key_id              = aws_kms_key.central.arn
  recovery_window_in_days = 30
  #checkov:skip=CKV2_AWS_57:Cordon keys rotate by enrolling a new key; the database uses IAM authentication.
}

resource "aws_db_subnet_group" "view" {
  name       = "${local.name}-view"
  subnet_ids = module.network.private_subnet_ids
}

resource "aws_security_group" "view" {
  name        = "${local.name}-view"
  description = "The aggregator's PostgreSQL: reachable from inside central's VPC only"
  vpc_id      = module.network.vpc_id

  ingress {
    description = "PostgreSQL from central's VPC"
    from_port   = 5432
    to_port     = 5432
    protocol    = "tcp"
    cidr_blocks = [var.cidr]
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name = "${local.name}-rds-monitoring"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "monitoring.rds.amazonaws.com" }
    }]
  })
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_parameter_group" "view" {
  name   = "${local.name}-view"
  family = "postgres16"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
}

resource "aws_db_instance" "view" {
  identifier                          = "${local.name}-view"
  engine                              = "postgres"
  engine_version                      = "16"
  instance_class                      = var.db_instance_class
  allocated_storage                   = var.db_storage_gib
  db_name                             = "cordon"
  username                            = "cordon"
  manage_master_user_password         = true
  master_user_secret_kms_key_id       = aws_kms_key.central.arn
  iam_database_authentication_enabled = true
  storage_encrypted                   = true
  kms_key_id                          = aws_kms_key.central.arn
  multi_az                            = true
  db_subnet_group_name                = aws_db_subnet_group.view.name
  vpc_security_group_ids              = [aws_security_group.view.id]
  parameter_group_name                = aws_db_parameter_group.view.name
  backup_retention_period             = 35
  deletion_protection                 = true
  copy_tags_to_snapshot               = true
  auto_minor_version_upgrade          = true
  publicly_accessible                 = false
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]
  performance_insights_enabled        = true
  performance_insights_kms_key_id     = aws_kms_key.central.arn
  monitoring_interval                 = 60
  monitoring_role_arn                 = aws_iam_role.rds_monitoring.arn
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${local.name}-view-final"
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
    resources = [aws_kms_key.central.arn]
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
  description = "What deploy/kubernetes/overlays/central needs."
  value = {
    namespace   = local.namespace
    regions     = var.regions
    cluster     = module.cluster.name
    endpoint    = module.cluster.endpoint
    role_arns   = { for k, role in aws_iam_role.workload : k => role.arn }
    secret_arns = { for k, secret in aws_secretsmanager_secret.this : k => secret.arn }
    store_dsn   = "postgresql://cordon@${aws_db_instance.view.address}:5432/cordon"
  }
}
