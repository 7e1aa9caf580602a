mod calls;
mod cli;
mod evapi;
mod gateways;
mod lcr;
mod reload;
mod serve;
mod util;
