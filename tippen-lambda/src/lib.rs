//! tippen on AWS Lambda, API Gateway WebSockets and DynamoDB.
//!
//! Not built yet (issue 8): this crate only reserves the name and the place in the workspace.
//! It will convert `lambda_http` requests into [`tippen_core::api`] calls, keep state in a
//! DynamoDB implementation of [`tippen_core::store::Store`], and drive the core's deadline work
//! from a scheduled function.
