mod calls;
mod cli;
mod gateways;
mod lcr;
mod reload;
mod serve;
mod util;
