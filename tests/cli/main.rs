//! The one integration-test binary of deploy-tools.

mod support;

mod alerting;
mod compare_metrics;
mod config;
mod config_types;
mod contract;
mod cutover;
mod cutover_faults;
mod db_migrate;
mod deploy_metrics;
mod deployment_report;
mod emergency;
mod exit_codes;
mod faults;
mod flyway;
mod help;
mod jenkins;
mod maintenance_mode;
mod measure_latency;
mod notify;
mod online;
mod pages;
mod pipeline;
mod redaction;
mod refresh;
mod report;
mod smoke_tests;
mod stack;
mod strategy_rollout;
mod validate_config;
mod verify_env;
mod watch_matrix;
