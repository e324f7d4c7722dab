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
    nats       = ["nats-tls"]
  }
}

module "kms" {
  source      = "../kms"
  name        = local.name
  description = "Cordon central: EKS secrets, Secrets Manager, logs"
}

module "network" {
  source             = "../network"
  name               = local.name
  cidr               = var.cidr
  kms_key_arn        = module.kms.arn
  log_retention_days = var.log_retention_days
}

module "cluster" {
  source      = "../cluster"
  name        = local.name
  subnet_ids  = module.network.private_subnet_ids
  kms_key_arn = module.kms.arn
}

module "access" {
  source            = "../access"
  name              = local.name
  place             = "central"
  namespace         = local.namespace
  access            = local.access
  kms_key_arn       = module.kms.arn
  oidc_provider_arn = module.cluster.oidc_provider_arn
  oidc_issuer       = module.cluster.oidc_issuer
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
  master_user_secret_kms_key_id       = module.kms.arn
  iam_database_authentication_enabled = true
  storage_encrypted                   = true
  kms_key_id                          = module.kms.arn
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
  performance_insights_kms_key_id     = module.kms.arn
  monitoring_interval                 = 60
  monitoring_role_arn                 = aws_iam_role.rds_monitoring.arn
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${local.name}-view-final"
}

output "overlay" {
  description = "What deploy/kubernetes/overlays/central needs."
  value = {
    namespace   = local.namespace
    regions     = var.regions
    cluster     = module.cluster.name
    endpoint    = module.cluster.endpoint
    role_arns   = module.access.role_arns
    secret_arns = module.access.secret_arns
    store_dsn   = "postgresql://cordon@${aws_db_instance.view.address}:5432/cordon"
  }
}

output "kustomize_patch" {
  description = "deploy/kubernetes/overlays/central/terraform-patch.yaml: each workload's role."
  value       = join("---\n", module.access.service_account_patches)
}
