mod calls;
mod cli;
mod gateways;
mod lcr;
mod quality;
mod reload;
mod serve;
mod util;
