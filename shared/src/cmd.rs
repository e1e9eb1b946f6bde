//! One module per binary: its clap `Args` and its `Tool` impl.

pub mod compare_metrics;
pub mod cutover;
pub mod db_migrate;
pub mod emergency_rollback;
pub mod emergency_stop;
pub mod generate_deployment_report;
pub mod isolate_server;
pub mod maintenance_mode;
pub mod measure_latency;
pub mod notify;
pub mod show_config;
pub mod smoke_tests;
pub mod strategy_rollout;
pub mod validate_config;
pub mod verify_env;
