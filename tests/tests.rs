mod cli;
mod lcr;
mod reload;
mod serve;
mod util;
