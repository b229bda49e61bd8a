//! lameduck
