mod cli;
mod gateways;
mod reload;
mod serve;
mod util;
