//! berth-sandbox
