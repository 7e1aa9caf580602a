
mod serve;
