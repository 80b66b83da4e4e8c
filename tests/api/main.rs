//! Integration tests: the real server over HTTP, on PostgreSQL and on SQLite.
mod helpers;

mod api_surface;
mod audit;
mod bodies;
mod daemons;
mod defence;
mod detection;
mod dev;
mod engines;
mod exactly_once;
mod isolation;
mod layers;
mod openapi;
mod rescan;
mod retrohunts;
mod roles;
mod row_security;
mod scan_queue;
mod settings;
mod shutdown;
mod smtp;
mod stream;
mod tenancy;
mod token_cli;
mod tokens;
mod vectors;
