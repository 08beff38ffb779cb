#include <iostream>
int main() { std::cout << "qins: under construction\n"; return 0; }
